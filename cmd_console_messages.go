package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/broker"
)

// The message browser: GET /v1/console/topics/T/partitions/P/messages
// with
//
//	from=offset&offset=N      records from offset N (default: the log start)
//	from=timestamp&timestamp=MS  from the first record at or after MS
//	from=end                  the last `limit` records
//	limit=N                   records per page, 1..consolePageMax (default 50)
//	key=S                     only records whose key contains S (bytes)
//
// It reads the partition's log through Broker.Fetch, the Kafka Fetch
// handler's own call (read_uncommitted, no consumer group), one chunk of
// consoleFetchBytes at a time, and stops at the page's record limit, at
// consolePageBytes of shown bytes, or after consoleScanBytes of log
// scanned for a key filter; the answer's next_offset continues from there.
// A value longer than consoleValueMax is cut (truncated: true, size: its
// whole length). So one request holds at most one fetch chunk, one
// decompressed batch (consoleDecompressMax) and one page.

const (
	consolePageDefault   = 50
	consolePageMax       = 500
	consolePageBytes     = 1 << 20  // shown key, value and header bytes per page
	consoleValueMax      = 64 << 10 // shown bytes of one key or value
	consoleFetchBytes    = 1 << 20  // one Fetch
	consoleScanBytes     = 32 << 20 // log bytes a filtered page may scan
	consoleDecompressMax = 8 << 20  // one decompressed batch
)

// ConsoleBytes is a key, value or header value as the browser shows it.
type ConsoleBytes struct {
	// Encoding is null (no bytes), json (Text is the pretty-printed
	// document), text (UTF-8 without control characters) or hex.
	Encoding  string `json:"encoding"`
	Text      string `json:"text,omitempty"`
	Size      int    `json:"size"`
	Truncated bool   `json:"truncated,omitempty"`
}

// ConsoleRecord is one record of a page.
type ConsoleRecord struct {
	Offset        int64           `json:"offset"`
	Timestamp     int64           `json:"timestamp"`
	LogAppendTime bool            `json:"log_append_time,omitempty"`
	Key           ConsoleBytes    `json:"key"`
	Value         ConsoleBytes    `json:"value"`
	Headers       []ConsoleHeader `json:"headers"`
	Transactional bool            `json:"transactional,omitempty"`
}

// ConsoleHeader is one record header.
type ConsoleHeader struct {
	Key   string       `json:"key"`
	Value ConsoleBytes `json:"value"`
}

// ConsolePage is the answer of the messages route.
type ConsolePage struct {
	Topic         string          `json:"topic"`
	Partition     int32           `json:"partition"`
	LogStart      int64           `json:"log_start"`
	HighWatermark int64           `json:"high_watermark"`
	StartOffset   int64           `json:"start_offset"` // where the page began reading
	NextOffset    int64           `json:"next_offset"`  // where the next page begins
	Records       []ConsoleRecord `json:"records"`
	Scanned       int64           `json:"scanned_bytes"`
	// Stopped says why the page ended: limit, bytes, scan (a key filter
	// scanned consoleScanBytes), end (the high watermark).
	Stopped string `json:"stopped"`
}

// pageQuery is a parsed messages request.
type pageQuery struct {
	from      string
	offset    int64
	timestamp int64
	limit     int
	key       []byte
}

func parsePageQuery(r *http.Request) (pageQuery, error) {
	q := r.URL.Query()
	pq := pageQuery{from: q.Get("from"), offset: -1, limit: consolePageDefault}
	if pq.from == "" {
		pq.from = "offset"
	}
	num := func(name string) (int64, error) {
		v, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%s: %q is not a number >= 0", name, q.Get(name))
		}
		return v, nil
	}
	var err error
	switch pq.from {
	case "offset":
		if q.Get("offset") != "" {
			pq.offset, err = num("offset")
		}
	case "timestamp":
		pq.timestamp, err = num("timestamp")
	case "end":
	default:
		err = fmt.Errorf("from: %q is not offset, timestamp or end", pq.from)
	}
	if err != nil {
		return pq, err
	}
	if q.Get("limit") != "" {
		l, err := num("limit")
		if err != nil || l < 1 || l > consolePageMax {
			return pq, fmt.Errorf("limit: %q is not between 1 and %d", q.Get("limit"), consolePageMax)
		}
		pq.limit = int(l)
	}
	if k := q.Get("key"); k != "" {
		if len(k) > 1024 {
			return pq, fmt.Errorf("key: at most 1024 bytes")
		}
		pq.key = []byte(k)
	}
	return pq, nil
}

func (c *console) messages(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	topic := r.PathValue("topic")
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || p < 0 {
		httpError(w, http.StatusBadRequest, "partition: "+strconv.Quote(r.PathValue("partition"))+" is not a partition number")
		return
	}
	pq, err := parsePageQuery(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, ok := br.Topic(topic); !ok {
		httpError(w, http.StatusNotFound, "topic "+strconv.Quote(topic)+" does not exist")
		return
	}
	release, err := c.acquireReader(r.Context())
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer release()
	page, err := readPage(br, topic, int32(p), pq)
	if err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) && ke == kerr.NotLeaderForPartition {
			leader, _, _ := br.PartitionLeader(topic, int32(p))
			answerJSON(w, http.StatusConflict, map[string]any{"message": fmt.Sprintf(
				"partition %s-%d is not led by this node (%d) but by node %d: browse it on that node's console",
				topic, p, br.Config().NodeID, leader), "leader": leader})
			return
		}
		consoleError(w, err)
		return
	}
	answerJSON(w, 200, page)
}

// readPage reads one page of a partition; see the comment at the top.
func readPage(br *broker.Broker, topic string, partition int32, pq pageQuery) (*ConsolePage, error) {
	logStart, hw, _, err := br.FetchOffsets(topic, partition)
	if err != nil {
		return nil, err
	}
	pg := &ConsolePage{Topic: topic, Partition: partition, LogStart: logStart, HighWatermark: hw, Records: []ConsoleRecord{}}
	start := logStart
	switch pq.from {
	case "offset":
		if pq.offset >= 0 {
			start = pq.offset
		}
		if start < logStart || start > hw {
			return nil, fmt.Errorf("offset %d of %s-%d: the log holds %d to %d: %w", start, topic, partition, logStart, hw, kerr.OffsetOutOfRange)
		}
	case "timestamp":
		if start, err = offsetForTime(br, topic, partition, pq.timestamp); err != nil {
			return nil, err
		}
	case "end":
		start = max(logStart, hw-int64(pq.limit))
	}
	pg.StartOffset, pg.NextOffset = start, start
	var shown int
	for pg.Stopped == "" {
		if pg.NextOffset >= hw {
			pg.Stopped = "end"
			break
		}
		res, err := br.Fetch(topic, partition, pg.NextOffset, consoleFetchBytes, 0)
		if err != nil {
			return nil, err
		}
		if len(res.Records) == 0 {
			pg.Stopped = "end"
			break
		}
		pg.Scanned += int64(len(res.Records))
		from := pg.NextOffset
		err = broker.ReadRecords(res.Records, consoleDecompressMax, func(rec *broker.ViewRecord) bool {
			if rec.Offset < from || rec.Offset >= hw {
				return rec.Offset < hw
			}
			pg.NextOffset = rec.Offset + 1
			if rec.Control || (len(pq.key) > 0 && !bytes.Contains(rec.Key, pq.key)) {
				return true
			}
			cr := consoleRecord(rec)
			shown += cr.Key.Size + cr.Value.Size
			for _, h := range cr.Headers {
				shown += len(h.Key) + h.Value.Size
			}
			pg.Records = append(pg.Records, cr)
			switch {
			case len(pg.Records) >= pq.limit:
				pg.Stopped = "limit"
			case shown >= consolePageBytes:
				pg.Stopped = "bytes"
			}
			return pg.Stopped == ""
		})
		if err != nil {
			return nil, fmt.Errorf("%s-%d: %w", topic, partition, err)
		}
		if pg.NextOffset == from { // only records below from (or markers past hw): skip the chunk
			pg.Stopped = "end"
		}
		if pg.Stopped == "" && pg.Scanned >= consoleScanBytes {
			pg.Stopped = "scan"
		}
	}
	return pg, nil
}

// offsetForTime is Kafka's ListOffsets by timestamp: the first offset
// whose record's timestamp is at or after ts, or the high watermark. The
// broker answers a compressed batch's first offset without decoding it,
// so the batch is read here to find the record itself.
func offsetForTime(br *broker.Broker, topic string, partition int32, ts int64) (int64, error) {
	off, _, err := br.ListOffset(topic, partition, ts, 0)
	if err != nil {
		return -1, err
	}
	if off < 0 { // nothing at or after the timestamp
		_, hw, err := br.PartitionOffsets(topic, partition)
		return hw, err
	}
	res, err := br.Fetch(topic, partition, off, 1, 0) // the batch holding off
	if err != nil {
		return -1, err
	}
	found, next := int64(-1), off
	err = broker.ReadRecords(res.Records, consoleDecompressMax, func(rec *broker.ViewRecord) bool {
		next = rec.Offset + 1
		if rec.Offset >= off && rec.Timestamp >= ts {
			found = rec.Offset
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return -1, fmt.Errorf("%s-%d: %w", topic, partition, err)
	case found >= 0:
		return found, nil
	}
	return max(next, off), nil // the batch's max timestamp was later than any record's: the next batch
}

func consoleRecord(rec *broker.ViewRecord) ConsoleRecord {
	cr := ConsoleRecord{Offset: rec.Offset, Timestamp: rec.Timestamp, LogAppendTime: rec.LogAppendTime,
		Key: showBytes(rec.Key), Value: showBytes(rec.Value), Headers: []ConsoleHeader{}, Transactional: rec.Transactional}
	for _, h := range rec.Headers {
		cr.Headers = append(cr.Headers, ConsoleHeader{Key: h.Key, Value: showBytes(h.Value)})
	}
	return cr
}

// showBytes chooses how the browser shows b: pretty JSON, text or hex,
// the first consoleValueMax bytes of it. Size counts what is shown.
func showBytes(b []byte) ConsoleBytes {
	if b == nil {
		return ConsoleBytes{Encoding: "null"}
	}
	out := ConsoleBytes{Size: len(b)}
	if len(b) > consoleValueMax {
		b, out.Truncated = b[:consoleValueMax], true
	}
	if !out.Truncated && len(b) > 0 && (b[0] == '{' || b[0] == '[') && json.Valid(b) {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil {
			out.Encoding, out.Text = "json", buf.String()
			return out
		}
	}
	if isText(b, out.Truncated) {
		out.Encoding, out.Text = "text", string(b)
		return out
	}
	if out.Truncated {
		b = b[:consoleValueMax/2] // hex doubles it
	}
	out.Encoding, out.Text = "hex", hex.EncodeToString(b)
	return out
}

// isText: valid UTF-8 (a cut rune at the end allowed when truncated) with
// no control characters but tab, newline and carriage return.
func isText(b []byte, truncated bool) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return truncated && len(b) < utf8.UTFMax && !utf8.FullRune(b)
		}
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return false
		}
		b = b[n:]
	}
	return true
}
