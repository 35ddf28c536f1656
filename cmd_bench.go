package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"
)

// chronik bench: produce and consume load against any Kafka broker, so users
// can measure their own install with the same figures the README quotes.

func benchFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "brokers", Value: "localhost:9092", EnvVars: []string{"CHRONIK_BROKERS"},
			Usage: "comma-separated seed brokers"},
		&cli.StringFlag{Name: "topic", Value: "chronik-bench", Usage: "topic to use (created if missing)"},
		&cli.IntFlag{Name: "partitions", Value: 1, Usage: "partitions when the topic is created"},
		&cli.IntFlag{Name: "records", Value: 100000, Usage: "records to produce or consume"},
		&cli.IntFlag{Name: "record-size", Value: 1024, Usage: "value bytes per record"},
		&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up after this long"},
	}, clientFlags()...)
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure produce or consume throughput and latency against a broker",
		Subcommands: []*cli.Command{
			{
				Name:  "produce",
				Usage: "produce --records records of --record-size bytes and report throughput and latency",
				Flags: append(benchFlags(),
					&cli.StringFlag{Name: "acks", Value: "all", Usage: "all, 1 or 0"},
					&cli.IntFlag{Name: "rate", Usage: "records per second (0: as fast as possible); use for latency runs"},
					&cli.StringFlag{Name: "compression", Value: "none", Usage: "none, gzip, snappy, lz4, zstd"},
					&cli.IntFlag{Name: "keys", Usage: "give record i the key \"key-<i mod keys>\" (a compacted topic needs keys; kgo then partitions by key); 0: no keys"},
				),
				Action: benchProduceAction,
			},
			{
				Name:   "consume",
				Usage:  "consume --records records from the start of the topic and report throughput",
				Flags:  benchFlags(),
				Action: benchConsumeAction,
			},
		},
	}
}

// BenchResult is what `chronik bench` prints (as a table or JSON).
type BenchResult struct {
	Mode       string  `json:"mode"`
	Records    int     `json:"records"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	RecordsSec float64 `json:"records_per_sec"`
	MBSec      float64 `json:"mb_per_sec"`
	P50Ms      float64 `json:"p50_ms,omitempty"`
	P99Ms      float64 `json:"p99_ms,omitempty"`
	P999Ms     float64 `json:"p999_ms,omitempty"`
	MaxMs      float64 `json:"max_ms,omitempty"`
	Errors     int     `json:"errors"`
}

func (r BenchResult) print(w io.Writer, format string) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "%s: %d records, %.1f MB in %.2fs: %.0f records/s, %.2f MB/s",
		r.Mode, r.Records, float64(r.Bytes)/1e6, r.Seconds, r.RecordsSec, r.MBSec)
	if r.Mode == "produce" {
		fmt.Fprintf(w, ", latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	}
	fmt.Fprintf(w, ", %d errors\n", r.Errors)
	return nil
}

func benchCheck(c *cli.Context) error {
	if c.Int("records") < 1 {
		return cli.Exit("records: must be at least 1", 2)
	}
	if c.Int("record-size") < 0 || c.Int("record-size") > 64<<20 {
		return cli.Exit("record-size: must be between 0 and 67108864", 2)
	}
	if f := c.String("format"); f != "text" && f != "json" {
		return cli.Exit(fmt.Sprintf("format: %q is not one of text, json", f), 2)
	}
	return nil
}

func benchProduceAction(c *cli.Context) error {
	if err := benchCheck(c); err != nil {
		return err
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(c.String("topic")),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1 << 16)}
	switch c.String("acks") {
	case "all", "-1":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "0":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return cli.Exit(fmt.Sprintf("acks: %q is not one of all, 1, 0", c.String("acks")), 2)
	}
	codec, ok := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}[c.String("compression")]
	if !ok {
		return cli.Exit(fmt.Sprintf("compression: %q is not one of none, gzip, snappy, lz4, zstd", c.String("compression")), 2)
	}
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	if c.Int("rate") < 0 {
		return cli.Exit("rate: must not be negative", 2)
	}
	if c.Int("keys") < 0 {
		return cli.Exit("keys: must not be negative", 2)
	}
	cl, err := newClient(c, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	if err := ensureTopic(ctx, cl, c.String("topic"), c.Int("partitions")); err != nil {
		return cli.Exit(fmt.Sprintf("create topic %s: %v", c.String("topic"), err), 1)
	}
	prog := startProgressBar(c.App.ErrWriter, "produced", int64(c.Int("records")))
	res := benchProduce(ctx, cl, c.Int("records"), c.Int("record-size"), c.Int("rate"), c.Int("keys"), prog)
	prog.end()
	res.print(c.App.Writer, c.String("format"))
	if res.Errors > 0 {
		return cli.Exit(fmt.Sprintf("%d records failed", res.Errors), 1)
	}
	return nil
}

// benchProduce produces n records of size bytes, paced at rate records per
// second when rate > 0, keyed over keys distinct keys when keys > 0, and
// measures each record's ack latency; prog counts the acknowledged
// records.
func benchProduce(ctx context.Context, cl *kgo.Client, n, size, rate, keys int, prog *progress) BenchResult {
	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	lat := make([]time.Duration, n)
	var (
		mu     sync.Mutex
		errs   int
		wg     sync.WaitGroup
		start  = time.Now()
		period time.Duration
	)
	if rate > 0 {
		period = time.Second / time.Duration(rate)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if period > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * period)); wait > 0 {
				time.Sleep(wait)
			}
		}
		i := i
		sent := time.Now()
		wg.Add(1)
		rec := &kgo.Record{Value: value}
		if keys > 0 {
			rec.Key = strconv.AppendInt([]byte("key-"), int64(i%keys), 10)
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			lat[i] = time.Since(sent)
			prog.add(1)
			if err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	return BenchResult{
		Mode: "produce", Records: n, Bytes: int64(n) * int64(size), Seconds: elapsed,
		RecordsSec: float64(n) / elapsed, MBSec: float64(n) * float64(size) / 1e6 / elapsed,
		P50Ms: pct(0.50), P99Ms: pct(0.99), P999Ms: pct(0.999), MaxMs: pct(1), Errors: errs,
	}
}

func benchConsumeAction(c *cli.Context) error {
	if err := benchCheck(c); err != nil {
		return err
	}
	cl, err := newClient(c,
		kgo.ConsumeTopics(c.String("topic")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	prog := startProgressBar(c.App.ErrWriter, "consumed", int64(c.Int("records")))
	res, err := benchConsume(ctx, cl, c.Int("records"), prog)
	prog.end()
	res.print(c.App.Writer, c.String("format"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("consume: %v", err), 1)
	}
	return nil
}

// benchConsume reads n records from wherever the client is positioned;
// prog counts them.
func benchConsume(ctx context.Context, cl *kgo.Client, n int, prog *progress) (BenchResult, error) {
	var (
		got   int
		bytes int64
		errs  int
		start = time.Now()
		err   error
	)
	for got < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			err = fmt.Errorf("got %d of %d records: %w", got, n, ctx.Err())
			break
		}
		fetches.EachError(func(string, int32, error) { errs++ })
		before := got
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			bytes += int64(len(r.Value) + len(r.Key))
		})
		prog.add(int64(got - before))
	}
	elapsed := time.Since(start).Seconds()
	return BenchResult{Mode: "consume", Records: got, Bytes: bytes, Seconds: elapsed,
		RecordsSec: float64(got) / elapsed, MBSec: float64(bytes) / 1e6 / elapsed, Errors: errs}, err
}
