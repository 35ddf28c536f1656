package broker

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// viewBatch builds a batch at base offset base of records with keys,
// values and one header each; codec 1 gzips the records.
func viewBatch(t testing.TB, base int64, codec int16, keys, values []string) []byte {
	var recs []byte
	for i := range keys {
		r := kmsg.Record{TimestampDelta64: int64(i) * 10, OffsetDelta: int32(i), Value: []byte(values[i]),
			Headers: []kmsg.Header{{Key: "h", Value: []byte(keys[i])}}}
		if keys[i] != "" {
			r.Key = []byte(keys[i])
		}
		body := r.AppendTo(nil)[1:]
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	if codec == 1 {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(recs)
		w.Close()
		recs = buf.Bytes()
	}
	s := plain(len(keys))
	s.opaque, s.attrs = recs, codec
	b := buildBatch(s)
	binary.BigEndian.PutUint64(b, uint64(base))
	return b
}

func TestReadRecords(t *testing.T) {
	buf := viewBatch(t, 10, 0, []string{"a", "", "c"}, []string{"1", "<script>", "3"})
	buf = append(buf, viewBatch(t, 13, 1, []string{"d", "e"}, []string{"{\"x\":1}", "5"})...)
	full := len(buf)
	buf = append(buf, viewBatch(t, 15, 0, []string{"f"}, []string{"6"})[:30]...) // partial: ignored
	type got struct {
		off      int64
		ts       int64
		key, val string
		nullKey  bool
		hdr      string
	}
	var all []got
	err := ReadRecords(buf, 1<<20, func(r *ViewRecord) bool {
		all = append(all, got{r.Offset, r.Timestamp, string(r.Key), string(r.Value), r.Key == nil, string(r.Headers[0].Value)})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []got{{10, 1000, "a", "1", false, "a"}, {11, 1010, "", "<script>", true, ""}, {12, 1020, "c", "3", false, "c"},
		{13, 1000, "d", "{\"x\":1}", false, "d"}, {14, 1010, "e", "5", false, "e"}}
	if len(all) != len(want) {
		t.Fatalf("got %d records %+v, want %d", len(all), all, len(want))
	}
	for i := range want {
		if all[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, all[i], want[i])
		}
	}
	// Stopping early.
	n := 0
	ReadRecords(buf[:full], 1<<20, func(*ViewRecord) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("fn called %d times after returning false, want 2", n)
	}
	// The decompression bound.
	if err := ReadRecords(buf[:full], 8, func(*ViewRecord) bool { return true }); err == nil {
		t.Error("a batch decompressing past the bound was read")
	}
}

// FuzzReadRecords: any buffer decodes or fails, never panics, and records
// come out with their bytes inside what was given.
func FuzzReadRecords(f *testing.F) {
	f.Add(viewBatch(f, 0, 0, []string{"k"}, []string{"v"}), false)
	f.Add(viewBatch(f, 5, 1, []string{"k", "l"}, []string{"v", "w"}), false)
	f.Add(viewBatch(f, 0, 0, []string{"k"}, []string{"v"})[batchHeaderSize:], true)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 80), false)
	f.Fuzz(func(t *testing.T, b []byte, asRecords bool) {
		if asRecords {
			s := plain(3)
			s.opaque = b
			b = buildBatch(s)
		}
		ReadRecords(b, 1<<16, func(r *ViewRecord) bool {
			if len(r.Key) > len(b)+1<<16 || len(r.Value) > len(b)+1<<16 {
				t.Fatalf("record larger than its input")
			}
			return true
		})
	})
}
