package wal

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// tidwall/wal keeps the whole tail (active) segment of an open log in
// memory: its buffer grows with every append up to the segment size (4 MiB
// by default), so without a bound memory grows with active logs times
// segment size. A TailBudget bounds the sum over every log sharing it
// (Options.TailBudget) the way ReadCache bounds sealed-segment copies:
//
//   - Each log reports the bytes its tidwall log holds (the tail segment's
//     size while tidwall is open, 0 once released, rolled or closed) after
//     every change, under its own mu, so the reports of one log are
//     ordered. The wal also drops the copy of a segment tidwall keeps after
//     cycling to a new one (reads of sealed segments go through the
//     ReadCache), so the tail is all tidwall holds.
//   - When the sum passes the budget, one background goroutine per budget
//     rolls (Roll: seal, new empty segment) the logs with the largest
//     tails, largest first and up to rollWorkers at once, until the sum is
//     at most 90% of the budget, and exits. Appends never roll other logs
//     themselves, so an append does not pay for another log's roll: one
//     fsync (tidwall's close of the tail) and a file create, the new
//     file's directory entry being synced by the first append to it
//     (rollLocked); the roller takes only the victim's locks, never while
//     holding the budget's.
//   - Backpressure: an Append that leaves the sum above the budget plus
//     its log's segment size while the roller is working (appends outrun
//     it) waits, after releasing its own locks, until the roller brings
//     the sum back under that or stops, at most maxBudgetWait. So the sum
//     stays within about the budget plus one segment, plus what appends in
//     flight add.
//   - A tail under MinRollBytes is never rolled: rolling tiny tails would
//     only make tiny files. Memory is therefore bounded by the budget plus
//     MinRollBytes per open log (and OpenLogs bounds the open logs).
//
// Go's append grows a buffer by about a quarter at these sizes, so the
// resident cost of a tail is up to about 1.25 times what is reported.

// MinRollBytes is the smallest tail a TailBudget rolls.
const MinRollBytes = 64 << 10

// DefaultTailBudgetBytes is the budget the broker uses unless configured.
const DefaultTailBudgetBytes = 64 << 20

// maxBudgetWait bounds how long one Append waits for the roller.
const maxBudgetWait = time.Second

// TailBudget is a byte budget for the tail segments that open logs hold in
// memory, shared by every log opened with it (Options.TailBudget).
type TailBudget struct {
	limit int64 // rolling starts above this
	low   int64 // and stops at or below this

	mu       sync.Mutex
	tails    map[*Log]int64 // logs holding a tail in memory, and its bytes
	total    int64
	rolling  bool          // the roller goroutine is running
	stuck    bool          // the last roller stopped without rolling anything
	progress chan struct{} // closed and replaced when the roller rolled a log or stopped

	rolls atomic.Int64
	waits atomic.Int64

	// Tests: maxWait replaces maxBudgetWait; beforeRoll runs on the roller
	// before each roll of a victim.
	maxWait    time.Duration
	beforeRoll func(*Log)
}

// NewTailBudget returns a budget of bytes (at least MinRollBytes).
func NewTailBudget(bytes int64) *TailBudget {
	bytes = max(bytes, MinRollBytes)
	return &TailBudget{
		limit:    bytes,
		low:      bytes - bytes/10,
		tails:    make(map[*Log]int64),
		progress: make(chan struct{}),
		maxWait:  maxBudgetWait,
	}
}

// Limit is the budget in bytes.
func (b *TailBudget) Limit() int64 { return b.limit }

// Bytes is the sum of the tails the logs sharing b hold in memory now.
func (b *TailBudget) Bytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Rolls counts the logs rolled to stay within the budget.
func (b *TailBudget) Rolls() int64 { return b.rolls.Load() }

// Waits counts appends that waited for the roller (it was behind).
func (b *TailBudget) Waits() int64 { return b.waits.Load() }

// set records that l holds n bytes of tail in memory, and starts the roller
// if that takes the sum over the budget. l.mu held; b.mu is taken after
// it, and the roller never takes a log's locks while holding b.mu.
func (b *TailBudget) set(l *Log, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += n - b.tails[l]
	if n > 0 {
		b.tails[l] = n
	} else {
		delete(b.tails, l)
	}
	if b.total <= b.limit || b.rolling {
		return
	}
	// After a pass that found nothing to roll, only a tail that became
	// big enough to roll is worth another one.
	if b.stuck && n < MinRollBytes {
		return
	}
	b.rolling, b.stuck = true, false
	go b.roll()
}

// rollWorkers is how many victims the roller rolls at once. A roll is
// mostly waiting for its fsync; rolls in parallel share the filesystem's
// journal commits instead of queueing behind each other, so the roller
// keeps up with appends spread over many logs (a produce request brings
// 64 KiB to each of hundreds of partitions at once). On 1 GiB over 1,000
// partitions (README), 64 workers gave 116-130 MB/s where 8 gave 94-127,
// the appends waiting less for the roller.
const rollWorkers = 64

// roll runs on the roller goroutine until the sum is at most b.low, or a
// pass over the candidates rolled none (every tail is small, busy failing,
// or gone). It rolls up to rollWorkers victims at once.
func (b *TailBudget) roll() {
	for {
		victims := b.victims()
		if victims == nil {
			return
		}
		var rolled atomic.Int64
		inParallel(len(victims), rollWorkers, func(i int) {
			if b.Bytes() <= b.low {
				return
			}
			v := victims[i]
			if b.beforeRoll != nil {
				b.beforeRoll(v)
			}
			if v.rollForBudget() {
				rolled.Add(1)
				b.rolls.Add(1)
			}
			b.signal()
		})
		if rolled.Load() == 0 {
			b.stop(true)
			return
		}
	}
}

// victims returns the logs whose tails may be rolled, largest first; nil,
// with the roller stopped, if the sum is within b.low or there are none.
func (b *TailBudget) victims() []*Log {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total <= b.low {
		b.stopLocked(false)
		return nil
	}
	type cand struct {
		l *Log
		n int64
	}
	var cs []cand
	for l, n := range b.tails {
		if n >= MinRollBytes {
			cs = append(cs, cand{l, n})
		}
	}
	if len(cs) == 0 {
		b.stopLocked(true)
		return nil
	}
	slices.SortFunc(cs, func(x, y cand) int {
		switch {
		case x.n > y.n:
			return -1
		case x.n < y.n:
			return 1
		}
		return 0
	})
	out := make([]*Log, len(cs))
	for i, c := range cs {
		out[i] = c.l
	}
	return out
}

func (b *TailBudget) stop(stuck bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(stuck)
}

// stopLocked ends the roller and wakes appends waiting for it. b.mu held.
func (b *TailBudget) stopLocked(stuck bool) {
	b.rolling, b.stuck = false, stuck
	close(b.progress)
	b.progress = make(chan struct{})
}

// signal wakes appends waiting for the roller to make progress.
func (b *TailBudget) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.progress)
	b.progress = make(chan struct{})
}

// wait holds an append back while the sum is over the budget by more than
// slack and the roller is working on it, at most b.maxWait. No log locks
// held.
func (b *TailBudget) wait(slack int64) {
	var timer *time.Timer
	for {
		b.mu.Lock()
		if !b.rolling || b.total-slack <= b.limit { // not limit+slack: it may be MaxInt64
			b.mu.Unlock()
			return
		}
		ch := b.progress
		b.mu.Unlock()
		if timer == nil {
			b.waits.Add(1)
			timer = time.NewTimer(b.maxWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		}
	}
}

// idle reports whether the roller is stopped (tests).
func (b *TailBudget) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.rolling
}

// heldBytes is what l's tidwall log holds in memory: the tail segment while
// it is open. mu held.
func (l *Log) heldBytes() int64 {
	if l.tl == nil {
		return 0
	}
	return l.idx.tail().bytes
}

// reportTail tells l's budget, if any, what l holds now. mu held.
func (l *Log) reportTail() {
	if b := l.opts.TailBudget; b != nil {
		b.set(l, l.heldBytes())
	}
}

// waitTailBudget is called by Append after it released l's locks: it
// waits while the roller is behind (TailBudget.wait).
func (l *Log) waitTailBudget() {
	if b := l.opts.TailBudget; b != nil {
		b.wait(int64(l.opts.SegmentSize))
	}
}

// rollForBudget rolls l if it is still open, usable and holds a tail of
// at least MinRollBytes (it may have been released, rolled, truncated or
// closed since the roller chose it). It waits for l's locks: at most an
// append in progress.
func (l *Log) rollForBudget() bool {
	rolled := false
	l.mutate(func() error {
		rolled = l.heldBytes() >= MinRollBytes && l.rollLocked() == nil
		return nil
	})
	return rolled
}
