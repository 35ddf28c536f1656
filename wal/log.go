package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tidwall "github.com/tidwall/wal"
)

var errIndexInconsistent = fmt.Errorf("%w: index does not match the entries", ErrCorrupt)

const (
	defaultSegmentSize   = 4 << 20
	maxSegmentSize       = 1 << 30
	defaultFsyncInterval = 100 * time.Millisecond
	defaultIdleTimeout   = 30 * time.Second
	defaultIndexInterval = 32 << 10
)

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = defaultSegmentSize
	}
	o.SegmentSize = min(o.SegmentSize, maxSegmentSize)
	if o.SegmentCacheSize <= 0 {
		o.SegmentCacheSize = 1
	}
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = defaultFsyncInterval
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = defaultIdleTimeout
	}
	if o.IndexIntervalBytes <= 0 {
		o.IndexIntervalBytes = defaultIndexInterval
	}
	return o
}

// Log is a durable log in one directory. All methods are safe for
// concurrent use. A Log expects one writer: concurrent Appends are
// serialized, each with its own write and fsync, never coalesced; batching
// appends to share an fsync is the caller's business (commit.go).
type Log struct {
	dir  string
	opts Options

	closed  atomic.Bool
	lastUse atomic.Int64  // monotonic ns of the last Append/Read
	durable atomic.Uint64 // last index durable per the fsync policy

	// wmu serializes everything that writes: appends, truncation,
	// retention, Reset, Sync, idle release and Close. Everything it guards
	// may be read under wmu alone. Lock order: wmu, then mu.
	wmu      sync.Mutex
	syncFile *os.File // read-only handle on the tail segment, for fsync
	dirty    bool     // written but not synced
	// dirDue: a segment file was created since the directory was last
	// synced (a roll); the next append's sync makes its entry durable
	// (afterWrite).
	dirDue bool
	// durGen counts the times durable was lowered (truncation, Reset,
	// Recover), so that a Syncer round that began before one does not
	// mark the entries written after it durable (syncer.go).
	durGen    uint64
	syncArmed bool
	syncTimer *time.Timer
	stateMu   sync.Mutex // serializes SaveState
	rewriteMu sync.Mutex // serializes RewriteSegments (compact.go); taken before wmu

	// mu guards the tidwall log (its concurrent reads mutate its cache) and
	// the index. Writers of idx, next, floor, metaFloor hold wmu too.
	mu        sync.Mutex
	tl        *tidwall.Log // nil while released
	tlStale   bool         // tl's list of files predates a merge (openCurrent)
	idx       offsetIndex
	next      int64  // NextOffset
	floor     int64  // NextOffset while the log holds no record entries
	metaFloor int64  // floor as persisted in the meta file (0 without one)
	failed    error  // sticky: a write or fsync failed; reopen the log
	trustFrom uint64 // tail entries before this index came from disk and are not yet verified (see readTail)
	idleTimer *time.Timer
	repairs   []Repair
	// hasClean: a clean-shutdown marker file is in the directory; the
	// first change removes it (damage.go). Guarded by wmu.
	hasClean bool
	// unread are the sealed segments whose index Open took from the
	// clean-shutdown marker without reading their files, oldest first;
	// VerifySealed reads them. Guarded by mu.
	unread    []*segment
	syncFn    func(*os.File) error // tests: replaces fdatasync
	dirSyncFn func(string) error   // tests: replaces afterWrite's directory fsync
}

var epoch = time.Now()

func monotime() int64 { return int64(time.Since(epoch)) }

// Open opens (creating if needed) the log in dir. It finishes an interrupted
// Reset or truncation, cuts a damaged tail back to the last valid entry
// (reported through Options.OnRepair and Repairs), verifies the checksum of
// every entry and rebuilds the offset/time index from the frame headers.
// Damage anywhere but the tail is an error wrapping ErrCorrupt (a
// *CorruptError naming the file and index).
func Open(dir string, opts Options) (*Log, error) {
	opts = opts.withDefaults()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	l := &Log{dir: dir, opts: opts}
	l.idx.interval = int64(opts.IndexIntervalBytes)
	if l.repairs, err = removeRewriteTemps(dir); err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	if err := l.recover(nil); err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	l.lastUse.Store(monotime())
	if opts.OpenLogs == nil {
		// Without a budget for open logs, tidwall is opened now, so that
		// its checks run here. With one, it opens on first use: start-up
		// with thousands of partitions then holds no descriptor and
		// evicts nothing for the partitions nobody reads or writes.
		l.mu.Lock()
		err = l.ensureOpen()
		l.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("wal: open %s: %w", dir, err)
		}
	}
	if opts.OnRepair != nil {
		for _, r := range l.repairs {
			opts.OnRepair(r)
		}
	}
	return l, nil
}

// recover brings the directory into a consistent state and builds the index.
// sealed, if not nil, are index segments known to describe leading sealed
// segment files (wal.Recover's): those whose file is still there with the
// same size are kept instead of scanned again.
func (l *Log) recover(sealed []*segment) error {
	raw, err := readSidecar(l.dir, metaFile)
	if err != nil {
		return err
	}
	var m meta
	hasMeta := raw != nil
	interrupted := false // a Reset or truncation was cut short: not a clean shutdown
	if hasMeta {
		if m, err = decodeMeta(raw); err != nil {
			return err
		}
		if m.firstIndex == 0 {
			return errBadMeta
		}
		if m.resetting {
			interrupted = true
			if err := resetFiles(l.dir, m.firstIndex); err != nil {
				return err
			}
			m.resetting = false
			if err := writeAtomic(l.dir, metaFile, encodeMeta(m)); err != nil {
				return err
			}
		}
		l.metaFloor = m.floorOffset
	}
	finished, err := cleanDir(l.dir)
	if err != nil {
		return err
	}
	marker, present, clean, err := readClean(l.dir)
	if err != nil {
		return err
	}
	l.hasClean = present
	clean = clean && !interrupted && !finished
	files, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		first := uint64(1)
		if hasMeta && m.firstIndex > 0 {
			first = m.firstIndex
		}
		if err := createEmptySegment(l.dir, first); err != nil {
			return err
		}
		files = []uint64{first}
	}
	fromMarker := false
	if sealed == nil && clean {
		sealed, fromMarker = marker.sealed, true // a clean shutdown: only the tail is read
	}
	if interrupted || finished {
		sealed = nil
	}
	kept := keptSegments(l.dir, sealed, files)
	if fromMarker {
		l.unread = kept
	}
	l.idx.segs = append(l.idx.segs[:0], kept...)
	if err := l.scanFiles(files[len(kept):], clean); err != nil {
		return err
	}
	if clean {
		if err := l.checkClean(marker); err != nil {
			return err
		}
	}
	l.floor = l.metaFloor
	if start := l.idx.startOffset(); start >= 0 {
		l.floor = start
	}
	if l.floor != l.metaFloor {
		// Only possible after a crash between a meta write and the cut it
		// announced; make the meta file agree with the entries again.
		if err := l.writeMeta(l.idx.firstIndex(), l.floor); err != nil {
			return err
		}
	}
	l.next = l.idx.nextOffset()
	if l.next < 0 {
		l.next = l.floor
	}
	l.durable.Store(l.idx.lastIndex())
	return nil
}

// keptSegments is the longest prefix of sealed whose files are the first of
// files, unchanged in size, always leaving the last file to be scanned.
func keptSegments(dir string, sealed []*segment, files []uint64) []*segment {
	n := 0
	for n < len(sealed) && n < len(files)-1 && sealed[n].first == files[n] && sealed[n].next == files[n+1] {
		fi, err := os.Stat(filepath.Join(dir, segmentName(files[n])))
		if err != nil || fi.Size() != sealed[n].bytes {
			break
		}
		n++
	}
	return sealed[:n]
}

// scanFiles verifies every segment file and builds the index. The last file
// is cut back to its last valid entry if its tail is damaged, unless the log
// was shut down cleanly: then no write can have been interrupted, and a bad
// tail is corruption like damage anywhere else.
func (l *Log) scanFiles(files []uint64, cleanShutdown bool) error {
	var buf []byte
	if n := len(l.idx.segs); n > 0 && len(files) > 0 && l.idx.segs[n-1].next != files[0] {
		return &CorruptError{File: l.segPath(files[0]), Index: files[0], Reason: fmt.Sprintf("segment does not follow index %d", l.idx.segs[n-1].next-1)}
	}
	files = append([]uint64(nil), files...) // merge leftovers are taken out
	for i := 0; i < len(files); i++ {
		first := files[i]
		path := l.segPath(first)
		data, err := readFileInto(path, buf)
		if err != nil {
			return err
		}
		buf = data[:0]
		seg, stop := scanSegment(data, first, l.idx.interval)
		last := i == len(files)-1
		if stop != nil {
			if cleanShutdown {
				return &CorruptError{File: path, Index: stop.index, Pos: stop.pos, Reason: stop.reason + " after a clean shutdown"}
			}
			if !last || validFrameAfter(data, int(stop.pos)) {
				return &CorruptError{File: path, Index: stop.index, Pos: stop.pos, Reason: stop.reason}
			}
			if err := cutFile(path, stop.pos); err != nil {
				return err
			}
			l.repairs = append(l.repairs, Repair{
				File:     path,
				CutIndex: stop.index,
				CutBytes: int64(len(data)) - stop.pos,
				Reason:   stop.reason,
			})
		}
		// A merge (RewriteSegments) cut short after its rename leaves the
		// files it merged behind this one, which holds their entries.
		for !last && files[i+1] < seg.next {
			left := l.segPath(files[i+1])
			fi, err := os.Stat(left)
			if err != nil {
				return err
			}
			if err := os.Remove(left); err != nil {
				return err
			}
			l.repairs = append(l.repairs, Repair{File: left, CutIndex: files[i+1], CutBytes: fi.Size(), Reason: reasonMergeLeftover})
			files = append(files[:i+1], files[i+2:]...)
			last = i == len(files)-1
		}
		if !last && seg.next != files[i+1] {
			return &CorruptError{File: l.segPath(files[i+1]), Index: files[i+1], Reason: fmt.Sprintf("segment does not follow index %d", seg.next-1)}
		}
		if !last {
			seg.seal()
		}
		l.idx.segs = append(l.idx.segs, seg)
	}
	return nil
}

func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// cutFile truncates path to size bytes and makes that durable.
func cutFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

func (l *Log) segPath(first uint64) string { return filepath.Join(l.dir, segmentName(first)) }

// parseSegmentName returns the index of a tidwall file name (plain, .START
// or .END) and its suffix.
func parseSegmentName(name string) (index uint64, suffix string, ok bool) {
	if len(name) < 20 {
		return 0, "", false
	}
	index, err := strconv.ParseUint(name[:20], 10, 64)
	if err != nil || index == 0 {
		return 0, "", false
	}
	suffix = name[20:]
	switch suffix {
	case "", ".START", ".END", ".TEMP", ".START.TEMP", ".END.TEMP":
		return index, suffix, true
	}
	return 0, "", false
}

// cleanDir finishes what tidwall leaves behind when a truncation is
// interrupted, exactly as tidwall's own load does, so that the scan sees the
// final set of segment files: a .START file replaces every segment before
// it, an .END file every segment after it. Both were written atomically.
// Leftover temp files are removed. finished reports a truncation finished.
func cleanDir(dir string) (finished bool, err error) {
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return false, err
	}
	var names []string
	start, end := -1, -1
	changed := false
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return false, err
			}
			changed = true
			continue
		}
		_, suffix, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		switch suffix {
		case ".TEMP", ".START.TEMP", ".END.TEMP":
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return false, err
			}
			changed = true
			continue
		case ".START":
			start = len(names)
		case ".END":
			if end == -1 {
				end = len(names)
			}
		}
		names = append(names, name)
	}
	if start != -1 && end != -1 {
		return false, fmt.Errorf("%w: both %s and %s in %s", ErrCorrupt, names[start], names[end], dir)
	}
	finish := func(keep int, drop []string) error {
		for _, n := range drop {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
		n := names[keep]
		final := n[:20]
		return os.Rename(filepath.Join(dir, n), filepath.Join(dir, final))
	}
	if start != -1 {
		if err := finish(start, names[:start]); err != nil {
			return false, err
		}
		changed, finished = true, true
	}
	if end != -1 {
		if err := finish(end, names[end+1:]); err != nil {
			return false, err
		}
		changed, finished = true, true
	}
	if changed {
		return finished, syncDir(dir)
	}
	return false, nil
}

// listSegments returns the first indexes of the segment files, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		if index, suffix, ok := parseSegmentName(e.Name()); ok && suffix == "" && !e.IsDir() {
			out = append(out, index)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// createEmptySegment creates the empty segment file named first and makes
// it durable (the file and its directory entry).
func createEmptySegment(dir string, first uint64) error {
	f, err := createSegmentFile(dir, first)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// createSegmentFile creates (or empties) the segment file named first.
func createSegmentFile(dir string, first uint64) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, segmentName(first)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
}

// resetFiles removes every segment file and leaves one empty segment named
// first, which tidwall opens as an empty log starting at first.
func resetFiles(dir string, first uint64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, _, ok := parseSegmentName(e.Name()); ok && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return createEmptySegment(dir, first)
}

func (l *Log) writeMeta(first uint64, floor int64) error {
	if err := writeAtomic(l.dir, metaFile, encodeMeta(meta{firstIndex: first, floorOffset: floor})); err != nil {
		return err
	}
	l.metaFloor = floor
	return nil
}

func (l *Log) tidwallOptions() *tidwall.Options {
	return &tidwall.Options{
		NoSync:           true, // we fsync per policy, once per Append
		SegmentSize:      l.opts.SegmentSize,
		SegmentCacheSize: l.opts.SegmentCacheSize,
		NoCopy:           true, // Read hands out read-only views (see Read)
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// ensureOpen opens the tidwall log if it was released. mu held.
func (l *Log) ensureOpen() error {
	if l.tl != nil {
		return nil
	}
	if ol := l.openLogs(); ol != nil {
		if err := ol.reserve(l); err != nil {
			return fmt.Errorf("%s: %w", l.dir, err)
		}
	}
	tl, err := tidwall.Open(l.dir, l.tidwallOptions())
	if err != nil {
		l.releaseSlot()
	}
	if errors.Is(err, tidwall.ErrCorrupt) {
		return fmt.Errorf("%w: tidwall: %v", ErrCorrupt, err)
	}
	if err != nil {
		return fmt.Errorf("tidwall: %w", err)
	}
	first, _ := tl.FirstIndex()
	last, _ := tl.LastIndex()
	if first != l.idx.firstIndex() || last != l.idx.lastIndex() {
		tl.Close()
		l.releaseSlot()
		return fmt.Errorf("%w: tidwall sees [%d, %d], index has [%d, %d]", errIndexInconsistent,
			first, last, l.idx.firstIndex(), l.idx.lastIndex())
	}
	l.tl = tl
	l.untrustTail()
	l.reportTail()
	if l.opts.IdleTimeout > 0 {
		if l.idleTimer == nil {
			l.idleTimer = time.AfterFunc(l.opts.IdleTimeout, l.idleCheck)
		} else {
			l.idleTimer.Reset(l.opts.IdleTimeout)
		}
	}
	return nil
}

// openCurrent opens the tidwall log with a list of segment files that
// matches the directory, reopening it if segments were merged
// (RewriteSegments) since it was opened: its list then still names the
// removed files, and truncations, the only tidwall calls that use the
// list, would act on them. wmu and mu held.
func (l *Log) openCurrent() error {
	if l.tl != nil && l.tlStale {
		if err := l.releaseLocked(); err != nil {
			return err
		}
	}
	return l.ensureOpen()
}

// releaseLocked closes the tidwall log, freeing its segment buffers; the
// index stays. wmu and mu held.
func (l *Log) releaseLocked() error {
	l.closeSyncFile()
	l.readCache().drop(l)
	if l.tl == nil {
		return nil
	}
	err := l.tl.Close() // fsyncs the tail
	l.tl, l.tlStale = nil, false
	l.releaseSlot()
	l.reportTail()
	if err != nil {
		l.failed = fmt.Errorf("wal: close %s: %w", l.dir, err)
		return l.failed
	}
	l.dirty = false
	l.durable.Store(l.idx.lastIndex())
	return nil
}

// releaseSlot gives back l's place in its OpenLogs cap.
func (l *Log) releaseSlot() {
	if ol := l.openLogs(); ol != nil {
		ol.release(l)
	}
}

func (l *Log) closeSyncFile() {
	if l.syncFile != nil {
		l.syncFile.Close()
		l.syncFile = nil
	}
}

// idleCheck runs on the idle timer: it releases the tidwall log after
// IdleTimeout without Append or Read, or re-arms the timer.
func (l *Log) idleCheck() {
	if l.closed.Load() {
		return
	}
	if idle := time.Duration(monotime() - l.lastUse.Load()); idle < l.opts.IdleTimeout {
		l.mu.Lock()
		if l.tl != nil && !l.closed.Load() {
			l.idleTimer.Reset(l.opts.IdleTimeout - idle)
		}
		l.mu.Unlock()
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() || l.tl == nil {
		return
	}
	if idle := time.Duration(monotime() - l.lastUse.Load()); idle < l.opts.IdleTimeout {
		l.idleTimer.Reset(l.opts.IdleTimeout - idle)
		return
	}
	l.releaseLocked()
}

func (l *Log) touch() { l.lastUse.Store(monotime()) }

// usable returns why the log cannot be used, if it cannot. mu held.
func (l *Log) usable() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return l.failed
}

// mutate runs f holding wmu and mu, if the log is usable: how the calls
// that change the log's files (truncations, Reset, Roll, segment swaps)
// begin.
func (l *Log) mutate(f func() error) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return f()
}

// readHeader is the index's headerReader. mu held.
func (l *Log) readHeader(index uint64) (header, int64, error) {
	return l.headerOf(index, l.readFrame)
}

// readHeaderTL is the headerReader for rebuilding the index after a
// truncation, when the index does not describe the files yet: it reads
// through tidwall only. mu held.
func (l *Log) readHeaderTL(index uint64) (header, int64, error) {
	return l.headerOf(index, l.readRaw)
}

func (l *Log) headerOf(index uint64, read func(uint64) ([]byte, error)) (header, int64, error) {
	data, err := read(index)
	if err != nil {
		return header{}, 0, err
	}
	h, err := decodeHeader(data)
	if err != nil {
		return header{}, 0, l.corruptAt(index, err)
	}
	return h, storedSize(len(data)), nil
}

// readFrame returns the verified frame at index, from the read cache for a
// sealed segment and from tidwall for the tail; it aliases their buffers.
// index must be in [FirstIndex, LastIndex]. mu held.
func (l *Log) readFrame(index uint64) ([]byte, error) {
	k := l.idx.segmentOf(index)
	if k < 0 {
		return nil, ErrNotFound
	}
	if k < len(l.idx.segs)-1 {
		return l.readSealed(l.idx.segs[k], index)
	}
	return l.readTail(index)
}

// readRaw returns the frame at index from tidwall, unverified; it aliases
// tidwall's buffer. mu held.
func (l *Log) readRaw(index uint64) ([]byte, error) {
	if err := l.ensureOpen(); err != nil {
		return nil, err
	}
	data, err := l.tl.Read(index)
	switch {
	case errors.Is(err, tidwall.ErrNotFound):
		return nil, ErrNotFound
	case errors.Is(err, tidwall.ErrCorrupt):
		return nil, l.corruptAt(index, err)
	case err != nil:
		return nil, fmt.Errorf("wal: read %d in %s: %w", index, l.dir, err)
	}
	return data, nil
}

func (l *Log) corruptAt(index uint64, err error) error {
	path := l.dir
	if k := l.idx.segmentOf(index); k >= 0 {
		path = l.segPath(l.idx.segs[k].first)
	}
	return &CorruptError{File: path, Index: index, Pos: -1, Reason: err.Error()}
}

// Read returns the entry at index; ErrNotFound outside [FirstIndex, LastIndex].
//
// The payload is read-only: it shares the buffer of a cached sealed segment
// or the tail buffer tidwall holds (opened with NoCopy). That is safe to
// hand out because neither is ever changed: a cached segment is replaced,
// not rewritten, and tidwall appends past the end, builds new buffers on
// truncation and reload, and only drops its reference on eviction. Not
// copying here saves one copy of every byte a consumer fetches. Every
// frame's checksum is verified before it is first served (readcache.go).
func (l *Log) Read(index uint64) (Entry, error) {
	l.touch()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return Entry{}, err
	}
	if index < l.idx.firstIndex() || index > l.idx.lastIndex() {
		return Entry{}, ErrNotFound
	}
	data, err := l.readFrame(index)
	if err != nil {
		return Entry{}, err
	}
	h, err := decodeHeader(data)
	if err != nil {
		return Entry{}, l.corruptAt(index, err)
	}
	return h.entry(data), nil
}

// FirstIndex is the first present index; LastIndex()+1 when empty.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idx.firstIndex()
}

// LastIndex is the last present index; FirstIndex()-1 when empty.
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idx.lastIndex()
}

// DurableIndex is the last index that is durable per the fsync policy
// (with FsyncAlways, every acknowledged Append; with FsyncNever, LastIndex).
func (l *Log) DurableIndex() uint64 { return l.durable.Load() }

// StartOffset is the Kafka offset of the first record entry, NextOffset()
// if there is none.
func (l *Log) StartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.idx.startOffset(); s >= 0 {
		return s
	}
	return l.next
}

// NextOffset is the log end offset: last record offset + 1.
func (l *Log) NextOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// FindOffset returns the index of the record entry containing offset, or of
// the first record entry after it; ErrOffsetNotFound if offset >= NextOffset().
func (l *Log) FindOffset(offset int64) (uint64, error) {
	l.touch()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	if offset >= l.next {
		return 0, ErrOffsetNotFound
	}
	index, ok, err := l.idx.findOffset(offset, l.readHeader)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrOffsetNotFound
	}
	return index, nil
}

// FindTimestamp returns the index of the first record entry whose
// MaxTimestamp >= ts; ErrOffsetNotFound if none.
func (l *Log) FindTimestamp(ts int64) (uint64, error) {
	l.touch()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	index, ok, err := l.idx.findTimestamp(ts, l.readHeader)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrOffsetNotFound
	}
	return index, nil
}

// IndexBytes estimates the heap the log's offset/time index holds (its
// segments' summaries and sparse index points).
func (l *Log) IndexBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.idx.segs {
		n += int64(s.memSize())
	}
	return n
}

// Segments describes the segment files, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SegmentInfo, len(l.idx.segs))
	for i, s := range l.idx.segs {
		out[i] = s.info(i == len(l.idx.segs)-1)
	}
	return out
}

// Size is the total bytes of the segment files.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var total int64
	for _, s := range l.idx.segs {
		total += s.bytes
	}
	return total
}

// SaveState atomically replaces the state sidecar with b.
func (l *Log) SaveState(b []byte) error {
	if l.closed.Load() {
		return ErrClosed
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if err := writeAtomic(l.dir, stateFile, encodeState(b)); err != nil {
		return fmt.Errorf("wal: save state in %s: %w", l.dir, err)
	}
	return nil
}

// LoadState returns the last saved state; nil, nil when none was saved.
func (l *Log) LoadState() ([]byte, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	raw, err := readSidecar(l.dir, stateFile)
	if err != nil || raw == nil {
		return nil, err
	}
	b, err := decodeState(raw)
	if err != nil {
		return nil, fmt.Errorf("wal: load state in %s: %w", l.dir, err)
	}
	return b, nil
}

// Sync makes every written entry durable.
func (l *Log) Sync() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	err := l.usable()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.syncLocked()
}

// syncLocked fsyncs the tail segment. wmu held.
func (l *Log) syncLocked() error {
	if l.syncFile == nil {
		f, err := os.Open(l.segPath(l.idx.tail().first))
		if err != nil {
			return l.fail("sync", err)
		}
		l.syncFile = f
	}
	start := time.Now()
	sync := fdatasync
	if l.syncFn != nil {
		sync = l.syncFn
	}
	if err := sync(l.syncFile); err != nil {
		return l.fail("sync", err)
	}
	if l.opts.OnSync != nil {
		l.opts.OnSync(time.Since(start))
	}
	l.dirty = false
	l.durable.Store(l.idx.lastIndex())
	return nil
}

// failLocked makes a failed mutation sticky: the in-memory state may no
// longer match the files, so every later call fails until the log is
// reopened. mu held.
func (l *Log) failLocked(op string, err error) error {
	l.failed = fmt.Errorf("wal: %s in %s: %w", op, l.dir, err)
	return l.failed
}

func (l *Log) fail(op string, err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(op, err)
}

// Repairs returns the tail cuts Open made.
func (l *Log) Repairs() []Repair {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Repair(nil), l.repairs...)
}

// Dir is the log's directory (absolute).
func (l *Log) Dir() string { return l.dir }

// Close syncs and closes the log, and marks it closed cleanly (damage.go)
// if every write and the final sync succeeded. A second call returns
// ErrClosed.
func (l *Log) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.idleTimer != nil {
		l.idleTimer.Stop()
	}
	if l.syncTimer != nil {
		l.syncTimer.Stop()
	}
	l.closeSyncFile()
	l.readCache().drop(l)
	if l.tl != nil {
		err := l.tl.Close() // fsyncs the tail
		l.tl = nil
		l.releaseSlot()
		l.reportTail()
		if err != nil {
			return fmt.Errorf("wal: close %s: %w", l.dir, err)
		}
	}
	if l.failed != nil {
		return nil // no marker: the next Open repairs as after a crash
	}
	// Best effort: without the marker (a full disk, say) the next Open
	// treats a bad tail as after a crash, which is what it did before
	// markers existed. The entries are synced either way.
	l.writeClean()
	return nil
}
