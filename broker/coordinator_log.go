package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// __consumer_offsets on disk: each GroupOutput's records become one
// uncompressed v2 record batch (producer id -1, CreateTime) appended through
// the partition's normal append path, so that the internal topic is an
// ordinary partition log (fetchable with any Kafka tool, replicated in
// cluster mode like any other) and replay is a scan of record batches.
// Its TxnRecords become a second, transactional batch of the producer, in
// the same append; the transaction's commit or abort marker (a control
// batch the transaction coordinator has written) follows later. Replay and
// compaction read the batch attributes and producer id of every record for
// that (groupBatchMeta).
//
// Compaction keeps replay bounded. Kafka's log cleaner rewrites closed
// segments in place; with a wal whose entries are append-only, Chronik
// instead appends a snapshot and moves the log start past the history:
//
//  1. scan [logStart, highWatermark) twice with a GroupCompactor: observe
//     every key, then keep the latest record of each key (and tombstones
//     younger than groupDeleteRetention);
//  2. append the kept records, in log order and with their original
//     timestamps, as new batches at the end of the log;
//  3. move the log start offset to the first snapshot offset (persisted in
//     the partition's state file, as DeleteRecords does) and drop the whole
//     segments below it.
//
// Replay depends only on the latest record of each key, so replaying the
// snapshot alone gives the state that replaying everything gives; a crash
// between steps 2 and 3 leaves history plus snapshot, which replays to the
// same state too. The table's mutex is held throughout, so no group record
// is appended in between.
//
// Compaction waits while a transaction that wrote offsets to the partition
// is open (GroupTable.HasOpenTxns; the scan checks it again): its records
// must stay pending until its marker, which may land at any moment, so
// they could be neither resolved in the snapshot nor rewritten behind a
// marker that resolves them. Markers that land during a compaction belong
// to transactions without records here and change nothing. Every
// transaction ends (the transaction coordinator aborts it after its
// timeout), and the next append or marker with none open compacts. Compaction runs on Open when the log holds many
// more records than live keys, and after an append that takes the records
// above the log start past groupCompactRatio times the live keys counted at
// the last compaction (and at least groupCompactMinRecords): amortised, a
// compaction costs a constant number of record reads per appended record.

// groupDeleteRetention is how long compaction keeps a tombstone that is
// the latest record of its key (Kafka's delete.retention.ms default).
const groupDeleteRetention = 24 * time.Hour

// groupCompactMinRecords and groupCompactRatio decide when a partition is
// compacted; variables so that tests and benchmarks can change them.
var (
	groupCompactMinRecords int64 = 10_000
	groupCompactRatio      int64 = 2
)

// groupSnapshotBatchRecords and groupSnapshotBatchBytes bound one batch of
// a compaction snapshot.
const (
	groupSnapshotBatchRecords = 4096
	groupSnapshotBatchBytes   = 512 << 10
)

// groupLogRecord is one record of __consumer_offsets with its timestamp.
type groupLogRecord struct {
	key, value []byte // nil value: tombstone
	timestamp  int64  // ms
}

// encodeGroupBatch encodes records as one uncompressed v2 record batch with
// base offset 0 (the partition assigns the real one). Records with a zero
// timestamp take now.
func encodeGroupBatch(records []groupLogRecord, now int64) []byte {
	return encodeGroupBatchOf(records, now, -1, -1, -1, 0)
}

// encodeGroupTxnBatch encodes records as one transactional batch of the
// producer, its first record numbered seq (see groupTxnSequence).
func encodeGroupTxnBatch(records []groupLogRecord, now int64, producerID int64, epoch int16, seq int32) []byte {
	return encodeGroupBatchOf(records, now, producerID, epoch, seq, attrTransactional)
}

func encodeGroupBatchOf(records []groupLogRecord, now int64, producerID int64, epoch int16, seq int32, attributes int16) []byte {
	first, maxTs := int64(math.MaxInt64), int64(math.MinInt64)
	size := batchHeaderSize
	for i := range records {
		if records[i].timestamp == 0 {
			records[i].timestamp = now
		}
		first = min(first, records[i].timestamp)
		maxTs = max(maxTs, records[i].timestamp)
		size += 5 + 1 + 10 + 5 + 5 + len(records[i].key) + 5 + len(records[i].value) + 1
	}
	b := make([]byte, batchHeaderSize, size)
	be := binary.BigEndian
	be.PutUint32(b[offLeaderEpoch:], math.MaxUint32) // -1
	b[offMagic] = 2
	be.PutUint16(b[offAttributes:], uint16(attributes))
	be.PutUint32(b[offLastOffsetDelta:], uint32(len(records)-1))
	be.PutUint64(b[offBaseTimestamp:], uint64(first))
	be.PutUint64(b[offMaxTimestamp:], uint64(maxTs))
	be.PutUint64(b[offProducerID:], uint64(producerID))
	be.PutUint16(b[offProducerEpoch:], uint16(epoch))
	be.PutUint32(b[offBaseSequence:], uint32(seq))
	be.PutUint32(b[offNumRecords:], uint32(len(records)))
	var rec []byte
	for i, r := range records {
		rec = rec[:0]
		rec = append(rec, 0) // attributes
		rec = binary.AppendVarint(rec, r.timestamp-first)
		rec = binary.AppendVarint(rec, int64(i))
		rec = binary.AppendVarint(rec, int64(len(r.key)))
		rec = append(rec, r.key...)
		if r.value == nil {
			rec = binary.AppendVarint(rec, -1)
		} else {
			rec = binary.AppendVarint(rec, int64(len(r.value)))
			rec = append(rec, r.value...)
		}
		rec = binary.AppendVarint(rec, 0) // no headers
		b = binary.AppendVarint(b, int64(len(rec)))
		b = append(b, rec...)
	}
	be.PutUint32(b[offBatchLength:], uint32(len(b)-logOverhead))
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

// errGroupBatch marks a batch in __consumer_offsets that cannot be read as
// group records (compressed, malformed).
var errGroupBatch = errors.New("unreadable __consumer_offsets batch")

// groupBatchMeta is what replay and compaction need to know of the batch a
// record is in: a record of a transactional batch waits for its
// producer's marker, and a control batch's record is that marker.
type groupBatchMeta struct {
	producerID    int64
	producerEpoch int16
	transactional bool
	control       bool
}

// forEachBatchRecord calls fn with every record of an uncompressed v2 batch
// (b is exactly the batch): the batch's meta, the record's offset delta,
// absolute timestamp, key and value (nil for a null value). Slices alias
// b.
func forEachBatchRecord(b []byte, fn func(meta groupBatchMeta, offsetDelta int32, timestamp int64, key, value []byte) error) error {
	if len(b) < batchHeaderSize {
		return fmt.Errorf("%w: %d bytes", errGroupBatch, len(b))
	}
	h := readBatchHeader(b)
	if h.size < batchHeaderSize || h.size > len(b) {
		return fmt.Errorf("%w: batch length %d of %d bytes", errGroupBatch, h.size, len(b))
	}
	if h.compression() != 0 {
		return fmt.Errorf("%w: attributes %#x", errGroupBatch, h.attributes)
	}
	meta := groupBatchMeta{producerID: h.producerID, producerEpoch: h.producerEpoch, transactional: h.transactional(), control: h.control()}
	rest := b[batchHeaderSize:h.size]
	varint := func(what string, i int32) (int64, error) {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return 0, fmt.Errorf("%w: record %d: bad %s", errGroupBatch, i, what)
		}
		rest = rest[n:]
		return v, nil
	}
	bytesField := func(what string, i int32) ([]byte, error) {
		l, err := varint(what+" length", i)
		if err != nil {
			return nil, err
		}
		if l < 0 {
			return nil, nil
		}
		if l > int64(len(rest)) {
			return nil, fmt.Errorf("%w: record %d: %s past the end", errGroupBatch, i, what)
		}
		v := rest[:l:l]
		rest = rest[l:]
		return v, nil
	}
	for i := int32(0); i < h.numRecords; i++ {
		length, err := varint("length", i)
		if err != nil {
			return err
		}
		if length < 1 || length > int64(len(rest)) {
			return fmt.Errorf("%w: record %d: length %d", errGroupBatch, i, length)
		}
		end := rest[length:]
		rest = rest[1:length] // skip attributes
		tsDelta, err := varint("timestamp delta", i)
		if err != nil {
			return err
		}
		offDelta, err := varint("offset delta", i)
		if err != nil {
			return err
		}
		key, err := bytesField("key", i)
		if err != nil {
			return err
		}
		value, err := bytesField("value", i)
		if err != nil {
			return err
		}
		if err := fn(meta, int32(offDelta), h.baseTimestamp+tsDelta, key, value); err != nil {
			return err
		}
		rest = end
	}
	return nil
}

// forEachRecord calls fn with every record at offsets [from, to) of the
// partition, in log order, markers included. It reads the wal directly:
// the partition is __consumer_offsets, whose batches Chronik wrote itself.
// A batch that cannot be decoded (it passed the wal's checksum, so only a
// bug could have written it) is logged and skipped rather than making
// every group of the partition unavailable; an error of fn or of the wal
// ends the scan.
func (p *partition) forEachRecord(from, to int64, fn func(offset, timestamp int64, meta groupBatchMeta, key, value []byte) error) error {
	if from >= to {
		return nil
	}
	idx, err := p.log.FindOffset(from)
	if errors.Is(err, wal.ErrOffsetNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s-%d from %d: %w", p.topic.name, p.index, from, err)
	}
	for last := p.log.LastIndex(); idx <= last; idx++ {
		e, err := p.log.Read(idx)
		if err != nil {
			return fmt.Errorf("read %s-%d at index %d: %w", p.topic.name, p.index, idx, err)
		}
		if e.Kind != wal.KindData || e.LastOffset() < from {
			continue
		}
		if e.BaseOffset >= to {
			return nil
		}
		err = forEachBatchRecord(e.Payload, func(meta groupBatchMeta, delta int32, ts int64, key, value []byte) error {
			off := e.BaseOffset + int64(delta)
			if off < from || off >= to {
				return nil
			}
			return fn(off, ts, meta, key, value)
		})
		if errors.Is(err, errGroupBatch) {
			p.b.logger.Error().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Int64("offset", e.BaseOffset).
				Msg("skipping an undecodable group batch")
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// appendInternal appends one batch built by the broker through the
// partition's normal append path (offset assignment, group commit, fsync)
// and returns its base offset once it is durable. It skips the checks
// that keep clients out of internal topics.
func (p *partition) appendInternal(batch []byte) (int64, error) {
	h := produceReqPool.Get().(*ProduceHandle)
	h.buf = batch
	h.acks = -1 // in cluster mode: answered once committed, as Kafka's coordinator writes
	var err error
	h.batches, err = parseBatches(h.hdrs[:0], batch, internalLimits)
	if err != nil {
		h.err = fmt.Errorf("internal batch for %s-%d: %w", p.topic.name, p.index, err) // a bug
	} else {
		p.enqueue(h)
	}
	res, err := h.Wait()
	return res.BaseOffset, err
}

// groupReplayResult is what replaying one partition found.
type groupReplayResult struct {
	table    *GroupTable
	records  int64 // records read
	corrupt  int   // records skipped as undecodable
	liveKeys int64
	took     time.Duration
}

// replayGroups rebuilds a GroupTable from the partition's records in
// [logStart, highWatermark). Undecodable records are logged and skipped:
// one bad record must not cost every group of the partition.
func replayGroups(p *partition, cfg GroupConfig, now time.Time) (groupReplayResult, error) {
	start := time.Now()
	r := NewGroupReplayer(cfg)
	var res groupReplayResult
	from, to := p.logStartOffset.Load(), p.highWatermark.Load()
	err := p.forEachRecord(from, to, func(offset, _ int64, m groupBatchMeta, key, value []byte) error {
		res.records++
		if err := replayGroupRecord(r, m, key, value); err != nil {
			if !errors.Is(err, ErrGroupRecordCorrupt) {
				return err
			}
			if res.corrupt < 10 {
				p.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Int64("offset", offset).Msg("skipping corrupt group record")
			}
			res.corrupt++
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("replay groups: %w", err)
	}
	res.table = r.Finish(now)
	res.liveKeys = groupLiveKeys(res.table)
	res.took = time.Since(start)
	return res, nil
}

// replayGroupRecord hands one record to the replayer by the kind of its
// batch.
func replayGroupRecord(r *GroupReplayer, m groupBatchMeta, key, value []byte) error {
	switch {
	case m.control:
		commit, known, err := groupMarkerType(key)
		if err == nil && known {
			r.ApplyMarker(m.producerID, commit)
		}
		return err
	case m.transactional:
		return r.ApplyTxn(m.producerID, key, value)
	}
	return r.Apply(key, value)
}

// groupMarkerType reads a control record's key, as Kafka's
// ControlRecordType.parse: version int16 (>= 0; newer versions are read as
// version 0), then type int16, 0 ABORT and 1 COMMIT. Other types (a
// leader change, ...) are not transaction markers: known is false. A key
// too short or with a negative version is corrupt.
func groupMarkerType(key []byte) (commit, known bool, err error) {
	if len(key) < 4 {
		return false, false, fmt.Errorf("%w: control record key of %d bytes", ErrGroupRecordCorrupt, len(key))
	}
	if v := int16(binary.BigEndian.Uint16(key)); v < 0 {
		return false, false, fmt.Errorf("%w: control record key version %d", ErrGroupRecordCorrupt, v)
	}
	switch int16(binary.BigEndian.Uint16(key[2:])) {
	case 0:
		return false, true, nil
	case 1:
		return true, true, nil
	}
	return false, false, nil
}

// groupLiveKeys estimates the keys a compacted partition holds: every
// committed offset and one metadata record per group.
func groupLiveKeys(t *GroupTable) int64 {
	n := int64(0)
	for _, g := range t.groups {
		n += int64(g.NumOffsets()) + 1
	}
	return n
}

// errGroupCompactOpenTxn is compactGroupLog's answer while a transaction
// that wrote offsets to the partition is open.
var errGroupCompactOpenTxn = errors.New("transactions with offsets in the partition are open")

// compactGroupLog compacts the partition (see the top of this file) and
// returns how many records lay above the log start before and after. The
// caller holds the table's mutex, so nothing else appends meanwhile.
func compactGroupLog(p *partition, now time.Time) (before, after int64, err error) {
	from, to := p.logStartOffset.Load(), p.highWatermark.Load()
	before = to - from
	c := NewGroupCompactor(groupDeleteRetention)
	err = p.forEachRecord(from, to, func(offset, _ int64, m groupBatchMeta, key, value []byte) error {
		switch {
		case m.control:
			if commit, known, err := groupMarkerType(key); err == nil && known {
				c.ObserveMarker(m.producerID, commit)
			}
		case m.transactional:
			c.ObserveTxn(offset, m.producerID, key, value == nil)
		default:
			c.Observe(offset, key)
		}
		return nil
	})
	if err != nil {
		return before, before, fmt.Errorf("compact: %w", err)
	}
	if n := c.Open(); n > 0 {
		return before, before, fmt.Errorf("compact: %w (%d)", errGroupCompactOpenTxn, n)
	}
	var (
		chunk []groupLogRecord
		bytes int
	)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		_, err := p.appendInternal(encodeGroupBatch(chunk, now.UnixMilli()))
		chunk, bytes = chunk[:0], 0
		return err
	}
	err = p.forEachRecord(from, to, func(offset, ts int64, m groupBatchMeta, key, value []byte) error {
		if m.control || !c.Keep(offset, key, value == nil, time.UnixMilli(ts), now) {
			return nil
		}
		// The slices alias a wal read buffer: copy.
		r := groupLogRecord{key: append([]byte(nil), key...), timestamp: ts}
		if value != nil {
			r.value = append([]byte{}, value...)
		}
		if ts == 0 {
			r.timestamp = 1 // 0 would mean "now" to encodeGroupBatch
		}
		chunk = append(chunk, r)
		bytes += len(key) + len(value)
		if len(chunk) >= groupSnapshotBatchRecords || bytes >= groupSnapshotBatchBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return before, before, fmt.Errorf("compact: write snapshot: %w", err)
	}
	if _, err := p.deleteRecords(to); err != nil {
		return before, before, fmt.Errorf("compact: move log start to %d: %w", to, err)
	}
	return before, p.highWatermark.Load() - to, nil
}
