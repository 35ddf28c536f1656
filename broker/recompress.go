package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Recompression on produce, for topics whose compression.type names a
// codec (Kafka's LogValidator: a batch whose codec differs from the
// topic's target is rebuilt with the target codec; one whose codec matches
// is kept byte for byte). Only the records section is re-encoded: the
// decompressed records are the same bytes whatever the codec, so offsets,
// offset and timestamp deltas, keys, values, headers, the producer id,
// epoch, base sequence and the transactional bit all stay as sent. The
// header changes in three fields: the codec bits of the attributes, the
// batch length, and the CRC32C over both. Control batches never come from
// clients (parseBatches refuses them) and are never recompressed.
//
// Bounds: the batch was validated first (validateRecords), so its records
// decompress within max-decompressed-batch-bytes; they are decompressed
// again as a stream straight into the encoder, never held whole. The
// output of one batch may not exceed the topic's max.message.bytes
// (MESSAGE_TOO_LARGE, as Kafka checks the size of a batch it rebuilt),
// and stops growing as soon as it would; the output of one request is
// bounded by max-decompressed-batch-bytes plus the request's own size.
//
// Formats are the ones every Kafka client reads, as Kafka's own broker
// writes them: gzip (RFC 1952), snappy in xerial framing (snappy-java's
// SnappyOutputStream: 32 KiB blocks), lz4 frames of independent 64 KiB
// blocks without checksums beyond the frame header's (Kafka's
// Lz4BlockOutputStream), and zstd frames with a window of at most 1 MiB.

// Codec numbers (the attributes' low three bits) and the topic setting
// that keeps batches as sent.
const (
	codecNone     int8 = 0
	codecGzip     int8 = 1
	codecSnappy   int8 = 2
	codecLz4      int8 = 3
	codecZstd     int8 = 4
	codecProducer int8 = -1

	// codecDefaultLevel means "the codec's default level".
	codecDefaultLevel = math.MinInt

	// xerialBlockSize is snappy-java's default block size, what Kafka's
	// broker and Java producer write.
	xerialBlockSize = 32 << 10

	// zstdEncoderWindow bounds what a consumer's decoder must buffer.
	zstdEncoderWindow = 1 << 20
)

// codecByName maps compression.type values to codecs.
var codecByName = map[string]int8{
	"producer":     codecProducer,
	"uncompressed": codecNone,
	"gzip":         codecGzip,
	"snappy":       codecSnappy,
	"lz4":          codecLz4,
	"zstd":         codecZstd,
}

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd"}

// errRecompressedTooLarge ends an encoder's output that went past its
// bound.
var errRecompressedTooLarge = errors.New("recompressed past the bound")

// needsRecompression reports whether any batch is stored with a codec
// other than target.
func needsRecompression(batches []batchHeader, target int8) bool {
	if target == codecProducer {
		return false
	}
	for i := range batches {
		if batches[i].compression() != target && !batches[i].control() {
			return true
		}
	}
	return false
}

// recompressBatches returns buf with every batch whose codec is not
// target re-encoded with target (level: codecDefaultLevel or the
// compression.<codec>.level), and updates each header's position, size
// and attributes. The batches must have passed parseBatches with lim.
// buf itself is not modified; when nothing needs recompression it is
// returned as is.
func recompressBatches(batches []batchHeader, buf []byte, target int8, level int, lim batchLimits) ([]byte, error) {
	if !needsRecompression(batches, target) {
		return buf, nil
	}
	total := lim.maxDecompressed + int64(len(buf))
	out := make([]byte, 0, min(int64(len(buf)), total))
	for i := range batches {
		h := &batches[i]
		b := buf[h.start : h.start+h.size]
		start := len(out)
		if h.compression() == target || h.control() {
			out = append(out, b...)
		} else {
			room := min(int64(lim.maxMessageBytes), total-int64(start))
			var err error
			out, err = recompressBatch(out, b, h, target, level, room, lim.maxDecompressed)
			if err != nil {
				return nil, fmt.Errorf("batch at byte %d: %w", h.start, err)
			}
		}
		h.start, h.size = start, len(out)-start
		if int64(len(out)) > total {
			return nil, fmt.Errorf("recompressed batches exceed %d bytes: %w", total, kerr.MessageTooLarge)
		}
	}
	return out, nil
}

// recompressBatch appends batch b (header h), its records re-encoded with
// target, to dst. The appended batch may take at most room bytes; its
// records may decompress to at most maxDecompressed.
func recompressBatch(dst, b []byte, h *batchHeader, target int8, level int, room, maxDecompressed int64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, b[:batchHeaderSize]...)
	w := boundedBuffer{b: dst, max: start + int(min(room, math.MaxInt32))}
	if err := encodeRecords(&w, h, b[batchHeaderSize:], target, level, maxDecompressed); err != nil {
		if errors.Is(err, errRecompressedTooLarge) {
			return nil, fmt.Errorf("recompressed with %s, the batch exceeds %d bytes (max.message.bytes): %w", codecNames[target], room, kerr.MessageTooLarge)
		}
		return nil, err
	}
	dst = w.b
	nb := dst[start:]
	be := binary.BigEndian
	be.PutUint32(nb[offBatchLength:], uint32(len(nb)-logOverhead))
	h.attributes = h.attributes&^attrCompressionMask | int16(target)
	be.PutUint16(nb[offAttributes:], uint16(h.attributes))
	be.PutUint32(nb[offCRC:], crc32.Checksum(nb[offAttributes:], crc32c))
	return dst, nil
}

// encodeRecords writes the records section recs (compressed with h's
// codec) to w, compressed with target.
func encodeRecords(w *boundedBuffer, h *batchHeader, recs []byte, target int8, level int, maxDecompressed int64) error {
	enc, release := openEncoder(w, target, level)
	defer release()
	if h.compression() == codecNone {
		if _, err := enc.Write(recs); err != nil {
			return err
		}
		return enc.Close()
	}
	src, done, err := openRecords(h, recs, maxDecompressed)
	if err != nil {
		return err
	}
	defer done()
	space := streamBufs.Get().(*[streamBufSize]byte)
	defer streamBufs.Put(space)
	n, err := io.CopyBuffer(enc, io.LimitReader(src, maxDecompressed+1), space[:])
	switch {
	case errors.Is(err, errRecompressedTooLarge):
		return err
	case errors.Is(err, errDecompressedTooLarge) || n > maxDecompressed:
		return fmt.Errorf("records decompress to more than %d bytes (max-decompressed-batch-bytes): %w", maxDecompressed, kerr.MessageTooLarge)
	case err != nil:
		return fmt.Errorf("%s: decompress: %v: %w", codecNames[h.compression()], err, kerr.CorruptMessage)
	}
	return enc.Close()
}

// boundedBuffer appends to b up to max bytes in all.
type boundedBuffer struct {
	b   []byte
	max int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if len(p) > w.max-len(w.b) {
		return 0, errRecompressedTooLarge
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// openRecords returns a reader of the decompressed records of a batch
// with a compressed codec, and the function that returns its state to
// its pool.
func openRecords(h *batchHeader, recs []byte, limit int64) (io.Reader, func(), error) {
	switch h.compression() {
	case codecGzip:
		g := gzipSources.Get().(*gzipSource)
		g.src.Reset(recs)
		if err := g.r.Reset(&g.src); err != nil {
			gzipSources.Put(g)
			return nil, nil, fmt.Errorf("gzip: %v: %w", err, kerr.CorruptMessage)
		}
		return &g.r, func() { gzipSources.Put(g) }, nil
	case codecSnappy:
		buf := getSnappyBuf()
		done := func() { putSnappyBuf(buf) }
		if len(recs) > xerialHeaderSize && bytes.HasPrefix(recs, xerialMagic) {
			return &xerialReader{blocks: recs[xerialHeaderSize:], buf: buf, left: limit + 1}, done, nil
		}
		out, err := decodeSnappy(buf, recs, limit)
		if err != nil {
			done()
			return nil, nil, snappyErr(err, limit)
		}
		return bytes.NewReader(out), done, nil
	case codecLz4:
		l := lz4Sources.Get().(*lz4Source)
		l.src.Reset(recs)
		l.r.Reset(&l.src)
		return l.r, func() { lz4Sources.Put(l) }, nil
	case codecZstd:
		z := zstdSources.Get().(*zstdSource)
		z.src.Reset(recs)
		if err := z.d.Reset(&z.src); err != nil {
			zstdSources.Put(z)
			return nil, nil, fmt.Errorf("zstd: %v: %w", err, kerr.CorruptMessage)
		}
		return z.d, func() { zstdSources.Put(z) }, nil
	}
	return nil, nil, fmt.Errorf("unknown compression codec %d: %w", h.compression(), kerr.CorruptMessage)
}

// encoder is a codec's stream writer; Close flushes the end of the stream.
type encoder interface {
	io.Writer
	Close() error
}

// openEncoder returns an encoder of target writing to w, and the function
// that returns it to its pool.
func openEncoder(w io.Writer, target int8, level int) (encoder, func()) {
	switch target {
	case codecGzip:
		pool := encoderPool(codecGzip, level)
		g := pool.Get().(*gzip.Writer)
		g.Reset(w)
		return g, func() { g.Reset(io.Discard); pool.Put(g) }
	case codecSnappy:
		x := xerialWriters.Get().(*xerialWriter)
		x.reset(w)
		return x, func() { x.reset(nil); xerialWriters.Put(x) }
	case codecLz4:
		pool := encoderPool(codecLz4, level)
		l := pool.Get().(*lz4.Writer)
		l.Reset(w)
		return l, func() { l.Reset(nil); pool.Put(l) }
	case codecZstd:
		pool := encoderPool(codecZstd, level)
		z := pool.Get().(*zstdEncoder)
		z.e.Reset(w)
		return z.e, func() { z.e.Reset(nil); pool.Put(z) }
	}
	return nopCloser{w}, func() {}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// encoderPools holds a pool of encoders per codec and level.
var encoderPools sync.Map // encoderKey -> *sync.Pool

type encoderKey struct {
	codec int8
	level int
}

func encoderPool(codec int8, level int) *sync.Pool {
	k := encoderKey{codec, level}
	if p, ok := encoderPools.Load(k); ok {
		return p.(*sync.Pool)
	}
	p, _ := encoderPools.LoadOrStore(k, &sync.Pool{New: func() any { return newEncoder(codec, level) }})
	return p.(*sync.Pool)
}

// zstdEncoder holds a zstd encoder so that a cleanup can close it when
// its pool drops it.
type zstdEncoder struct{ e *zstd.Encoder }

func newEncoder(codec int8, level int) any {
	switch codec {
	case codecGzip:
		if level == codecDefaultLevel || level == -1 {
			level = gzip.DefaultCompression
		}
		g, err := gzip.NewWriterLevel(nil, level)
		if err != nil {
			panic(fmt.Sprintf("gzip level %d: %v", level, err)) // validated by compression.gzip.level
		}
		return g
	case codecLz4:
		l := lz4.NewWriter(nil)
		err := l.Apply(
			lz4.BlockSizeOption(lz4.Block64Kb),
			lz4.ChecksumOption(false),
			lz4.BlockChecksumOption(false),
			lz4.ConcurrencyOption(1),
			lz4.CompressionLevelOption(lz4Level(level)),
		)
		if err != nil {
			panic(fmt.Sprintf("lz4 options: %v", err)) // constant options
		}
		return l
	case codecZstd:
		zl := zstd.SpeedDefault
		if level != codecDefaultLevel {
			zl = zstd.EncoderLevelFromZstd(level)
		}
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zl),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdEncoderWindow),
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			panic(fmt.Sprintf("zstd encoder options: %v", err)) // constant options
		}
		z := &zstdEncoder{e: e}
		runtime.AddCleanup(z, func(e *zstd.Encoder) { e.Close() }, e)
		return z
	}
	panic(fmt.Sprintf("no pooled encoder for codec %d", codec))
}

// lz4Level maps Kafka's lz4 levels (1 to 17, default 9: lz4-java's fast
// compressor at 1, its high-compression levels above) onto pierrec/lz4's
// (Fast, then Level1 to Level9, each searching twice as deep as the one
// before): 1 and 2 are Fast, 3 to 17 are Level1 to Level8, the default 9
// is Level4.
func lz4Level(level int) lz4.CompressionLevel {
	if level == codecDefaultLevel {
		level = 9
	}
	if level < 3 {
		return lz4.Fast
	}
	levels := [...]lz4.CompressionLevel{lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5, lz4.Level6, lz4.Level7, lz4.Level8}
	return levels[min((level-1)/2-1, len(levels)-1)]
}

// xerialWriter writes snappy in xerial framing: the header, then blocks
// of a 4-byte big-endian length and a raw snappy block of at most
// xerialBlockSize input bytes.
type xerialWriter struct {
	w       io.Writer
	pending []byte // input not encoded yet
	block   []byte // encode buffer
	err     error
}

var xerialWriters = sync.Pool{New: func() any {
	return &xerialWriter{pending: make([]byte, 0, xerialBlockSize), block: make([]byte, 4+snappy.MaxEncodedLen(xerialBlockSize))}
}}

// xerialHeader is the magic, version 1 and minimum compatible version 1.
var xerialHeader = append(append([]byte(nil), xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1)

func (x *xerialWriter) reset(w io.Writer) {
	x.w, x.pending, x.err = w, x.pending[:0], nil
	if w != nil {
		_, x.err = w.Write(xerialHeader)
	}
}

func (x *xerialWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && x.err == nil {
		c := copy(x.pending[len(x.pending):cap(x.pending)], p)
		x.pending = x.pending[:len(x.pending)+c]
		p, n = p[c:], n+c
		if len(x.pending) == cap(x.pending) {
			x.flush()
		}
	}
	return n, x.err
}

func (x *xerialWriter) flush() {
	if len(x.pending) == 0 || x.err != nil {
		return
	}
	enc := snappy.Encode(x.block[4:], x.pending)
	binary.BigEndian.PutUint32(x.block, uint32(len(enc)))
	_, x.err = x.w.Write(x.block[:4+len(enc)])
	x.pending = x.pending[:0]
}

func (x *xerialWriter) Close() error {
	x.flush()
	return x.err
}
