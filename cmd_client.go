package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"
)

// chronik produce and chronik consume: records in and out of a topic from a
// shell, against any Kafka-compatible broker.

// stdin is where produce reads its records; tests replace it.
var stdin io.Reader = os.Stdin

func produceCommand() *cli.Command {
	return adminCommand(&cli.Command{
		Name:      "produce",
		Usage:     "produce one record per line of standard input (acks=all)",
		ArgsUsage: "TOPIC",
		Description: `Each line is a record's value; with --key-separator, the text before the
first separator is the key. A summary (records, offsets) goes to standard
error; any record the broker did not acknowledge makes the exit status 1.
A missing topic exits 1 (create it with chronik topic create).`,
		Flags: append([]cli.Flag{
			brokersFlag(),
			&cli.StringFlag{Name: "key-separator", Usage: "split each line into key and value at the first `SEP`"},
			repeated("header", "record header `KEY=VALUE` (repeatable)"),
			&cli.IntFlag{Name: "partition", Value: -1, Usage: "produce every record to this partition (-1: by key hash, or spread)"},
			timeoutFlag(30*time.Second, "fail a record the brokers have not acknowledged within this long"),
		}, clientFlags()...),
		Action: withArgs("TOPIC", 1, 1, produceAction),
	})
}

// producedRange is the offsets one partition received.
type producedRange struct{ first, last int64 }

// produceResult gathers the outcome of every record.
type produceResult struct {
	mu       sync.Mutex
	ok       int
	failed   int
	firstErr error
	offsets  map[int32]*producedRange
}

func (r *produceResult) record(rec *kgo.Record, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.ok++
	pr := r.offsets[rec.Partition]
	if pr == nil {
		r.offsets[rec.Partition] = &producedRange{rec.Offset, rec.Offset}
		return
	}
	pr.first, pr.last = min(pr.first, rec.Offset), max(pr.last, rec.Offset)
}

// summary is the line produce writes to standard error.
func (r *produceResult) summary(topic string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "produced %d records to %s", r.ok, topic)
	parts := make([]int32, 0, len(r.offsets))
	for p := range r.offsets {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for i, p := range parts {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%spartition %d offsets %d-%d", sep, p, r.offsets[p].first, r.offsets[p].last)
	}
	if r.failed > 0 {
		fmt.Fprintf(&b, "; %d failed: %v", r.failed, r.firstErr)
	}
	return b.String()
}

func produceAction(c *cli.Context, args []string) error {
	topic := args[0]
	headerPairs, err := keyValues("header", repeatedValues(c, "header"))
	if err != nil {
		return err
	}
	headers := make([]kgo.RecordHeader, len(headerPairs))
	for i, kv := range headerPairs {
		headers[i] = kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])}
	}
	partition := c.Int("partition")
	if partition < -1 {
		return usageErr("partition: %d is not -1 or a partition number", partition)
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return usageErr("timeout: must be positive")
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(timeout)}
	if partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := newClient(c, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	ctx, cancel := withTimeout(c)
	_, err = checkTopic(c, ctx, kadm.NewClient(cl), topic, partition)
	cancel()
	if err != nil {
		return err
	}

	res := &produceResult{offsets: map[int32]*producedRange{}}
	prog := startProgress(c.App.ErrWriter, "produced")
	sep := c.String("key-separator")
	in := bufio.NewReaderSize(stdin, 64<<10)
	var readErr error
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			line = trimNewline(line)
			rec := &kgo.Record{Value: line, Headers: headers, Partition: int32(partition)}
			if sep != "" {
				if k, v, ok := bytes.Cut(line, []byte(sep)); ok {
					rec.Key, rec.Value = k, v
				}
			}
			cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
				res.record(r, err)
				if err == nil {
					prog.add(1)
				}
			})
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
	}
	// Every record ends within --timeout (the delivery timeout), so Flush
	// returns.
	cl.Flush(context.Background())
	prog.end()
	fmt.Fprintln(c.App.ErrWriter, res.summary(topic))
	switch {
	case readErr != nil:
		return failErr("read standard input: %v", readErr)
	case res.failed > 0:
		return failErr("%d of %d records failed: %v", res.failed, res.failed+res.ok, res.firstErr)
	}
	return nil
}

// trimNewline drops a line's "\n" or "\r\n". ReadBytes returns a fresh
// slice per line, which kgo may keep until the record is acknowledged.
func trimNewline(line []byte) []byte {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return line[:n:n]
}

func consumeCommand() *cli.Command {
	return adminCommand(&cli.Command{
		Name:      "consume",
		Usage:     "print records of a topic, one per line",
		ArgsUsage: "TOPIC",
		Description: `--from is where to start: earliest, latest, an OFFSET (clamped to each
partition's log start and end), @MILLIS (the first record with a timestamp
at or after that Unix time in milliseconds) or an RFC 3339 time. With
--group, consumption joins group G and commits what it prints; --from then
applies only to partitions the group has no committed offset for.

--format text prints each value on its own line (--print-key puts the key
and --key-separator first); --format json prints one object per line:
{"topic","partition","offset","timestamp" (ms),"key","value","headers":
[{"key","value"}]}, with null for a null key or value.

Consume runs until -n records, the end of the topic with -e (the end as it
was when consume started; with --group, the end of every partition, so run
a single member), --timeout, or Ctrl-C. Stopping short of -n records, or of
the end with -e, because of --timeout or Ctrl-C exits 1. A missing topic
exits 1.`,
		Flags: append([]cli.Flag{
			brokersFlag(),
			&cli.StringFlag{Name: "from", Value: "earliest", Usage: "earliest, latest, OFFSET, @MILLIS or an RFC 3339 time"},
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Usage: "stop after this many records (0: no limit)"},
			&cli.StringFlag{Name: "group", Usage: "consume as a member of this consumer group, committing offsets"},
			&cli.IntFlag{Name: "partition", Value: -1, Usage: "consume only this partition (-1: all)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
			&cli.BoolFlag{Name: "print-key", Usage: "text format: print the key and --key-separator before the value"},
			&cli.StringFlag{Name: "key-separator", Value: "\t", DefaultText: `"\t"`, Usage: "text format: what separates key and value with --print-key"},
			&cli.BoolFlag{Name: "exit-at-end", Aliases: []string{"e"}, Usage: "stop at the end of every partition"},
			timeoutFlag(0, "stop after this long (0: no limit)"),
		}, clientFlags()...),
		Action: withArgs("TOPIC", 1, 1, consumeAction),
	})
}

// ConsumedRecord is one line of `consume --format json`. Key, value and
// header values are text (invalid UTF-8 becomes U+FFFD); null stays null.
type ConsumedRecord struct {
	Topic     string         `json:"topic"`
	Partition int32          `json:"partition"`
	Offset    int64          `json:"offset"`
	Timestamp int64          `json:"timestamp"`
	Key       *string        `json:"key"`
	Value     *string        `json:"value"`
	Headers   []RecordHeader `json:"headers"`
}

// RecordHeader is one header of a ConsumedRecord.
type RecordHeader struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

func textOrNull(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func consumedRecord(r *kgo.Record) ConsumedRecord {
	cr := ConsumedRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(),
		Key: textOrNull(r.Key), Value: textOrNull(r.Value), Headers: make([]RecordHeader, len(r.Headers))}
	for i, h := range r.Headers {
		cr.Headers[i] = RecordHeader{Key: h.Key, Value: textOrNull(h.Value)}
	}
	return cr
}

// recordPrinter writes records in the chosen format.
type recordPrinter struct {
	w        *bufio.Writer
	json     *json.Encoder
	printKey bool
	sep      string
}

func (p *recordPrinter) print(r *kgo.Record) error {
	if p.json != nil {
		return p.json.Encode(consumedRecord(r))
	}
	if p.printKey {
		p.w.Write(r.Key)
		p.w.WriteString(p.sep)
	}
	p.w.Write(r.Value)
	return p.w.WriteByte('\n')
}

// consumeGroupAPIs are what a group member needs of the broker.
var consumeGroupAPIs = []int16{apiFindCoord, apiJoinGroup, apiSyncGroup, apiHeartbeat, apiLeaveGroup, apiOffsetFetch, apiOffsetCommit}

func consumeAction(c *cli.Context, args []string) error {
	topic := args[0]
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	from, err := parseStartPoint("from", c.String("from"))
	if err != nil {
		return err
	}
	count, partition, group := c.Int("count"), c.Int("partition"), c.String("group")
	if count < 0 {
		return usageErr("count: %d is negative", count)
	}
	if partition < -1 {
		return usageErr("partition: %d is not -1 or a partition number", partition)
	}
	if group != "" && partition >= 0 {
		return usageErr("--partition and --group cannot be combined: the group assigns partitions")
	}
	exitAtEnd := c.Bool("exit-at-end")

	sigCtx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.Context = sigCtx
	ctx, cancel := withTimeout(c)
	defer cancel()

	admCl, err := newClient(c)
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	parts, err := checkTopic(c, ctx, adm, topic, partition)
	if err != nil {
		return err
	}
	if group != "" {
		if err := requireAPIs(c, ctx, adm, "consume --group", consumeGroupAPIs...); err != nil {
			return err
		}
	}
	starts, ends, err := startOffsets(c, ctx, adm, topic, parts, from)
	if err != nil {
		return err
	}
	var opts []kgo.Opt
	if group != "" {
		committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			return brokerErr(c, ctx, "fetch committed offsets of group "+group, err)
		}
		for _, p := range parts {
			if o, ok := committed.Lookup(topic, p); ok && o.Err == nil && o.At >= 0 {
				starts[p] = o.At
			}
		}
		opts = append(opts, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(from.kgoOffset()), kgo.DisableAutoCommit())
	} else {
		at := map[int32]kgo.Offset{}
		for _, p := range parts {
			at[p] = kgo.NewOffset().At(starts[p])
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	}
	// remaining holds, with -e, each partition's end still to reach.
	remaining := map[int32]int64{}
	if exitAtEnd {
		for _, p := range parts {
			if starts[p] < ends[p] {
				remaining[p] = ends[p]
			}
		}
	}

	cl, err := newClient(c, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	out := bufio.NewWriter(c.App.Writer)
	printer := &recordPrinter{w: out, printKey: c.Bool("print-key"), sep: c.String("key-separator")}
	if format == "json" {
		printer.json = json.NewEncoder(out)
	}
	prog := startProgressBar(c.App.ErrWriter, "consumed", int64(count))
	defer prog.end()
	got := 0
	for (count == 0 || got < count) && !(exitAtEnd && len(remaining) == 0) {
		limit := -1
		if count > 0 {
			limit = count - got
		}
		fetches := cl.PollRecords(ctx, limit)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		var fatal error
		fetches.EachError(func(t string, p int32, err error) {
			var loss *kgo.ErrDataLoss
			switch {
			case errors.As(err, &loss):
				fmt.Fprintf(c.App.ErrWriter, "chronik: warning: %v\n", err)
			case kerr.IsRetriable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			case fatal == nil:
				fatal = fmt.Errorf("%s partition %d: %w", t, p, err)
			}
		})
		if fatal != nil {
			out.Flush()
			return failErr("consume %v", fatal)
		}
		var printed []*kgo.Record
		var werr error
		fetches.EachRecord(func(r *kgo.Record) {
			if werr != nil || (count > 0 && got >= count) {
				return
			}
			if exitAtEnd {
				end, ok := remaining[r.Partition]
				if !ok || r.Offset >= end {
					return // past the end this run stops at
				}
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
			}
			werr = printer.print(r)
			printed = append(printed, r)
			got++
		})
		if werr == nil {
			werr = out.Flush()
		}
		if werr != nil {
			return failErr("write records: %v", werr)
		}
		prog.add(int64(len(printed)))
		if group != "" && len(printed) > 0 {
			if err := cl.CommitRecords(ctx, printed...); err != nil {
				return brokerErr(c, ctx, "commit offsets of group "+group, err)
			}
		}
	}
	switch {
	case count > 0 && got >= count, exitAtEnd && len(remaining) == 0:
		return nil
	case count > 0:
		return failErr("consumed %d of %d records: %v", got, count, stopReason(ctx, c))
	case exitAtEnd:
		return failErr("consumed %d records, but not to the end of %s: %v", got, topic, stopReason(ctx, c))
	}
	return nil // neither -n nor -e: --timeout or Ctrl-C is the way to stop
}

// stopReason says why consume stopped early.
func stopReason(ctx context.Context, c *cli.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("--timeout %s passed", c.Duration("timeout"))
	}
	return "interrupted"
}
