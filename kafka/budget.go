package kafka

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"sync"
)

// byteBudget bounds the memory taken by request bodies across all
// connections (Kafka's queued.max.request.bytes, --max-inflight-request-bytes):
// bodies being read, queued or handled, and the bytes of bodies that are
// done but not yet collected by the garbage collector.
//
// Readers take room for bytes as they arrive, never for a size a client
// merely announces: a connection reading a body holds the buffer it has
// allocated so far, which grows as bytes come in (see nextBodyCap). Three
// rules keep a handful of connections from taking it all:
//
//   - share: one connection (a budgetHolder) holds at most share bytes (its
//     body in progress plus its requests being handled); beyond that it
//     waits for its own requests to finish. share is at least the largest
//     request, so any single frame is admissible.
//   - reserve: the top reserve bytes of the limit are only for holders that
//     hold at most small bytes, so clients sending ordinary small requests
//     (fetches, heartbeats, commits, small produces) keep going while large
//     frames fill the rest.
//   - the garbage collector: a released body is still memory until a
//     collection frees it. Its bytes stay counted until a GC cycle that
//     started after the release has finished (observed with a cleanup on a
//     sentinel object), and a reader that finds the budget full of such
//     bytes forces a collection. So live plus uncollected request bytes
//     never exceed the limit, whatever GOGC lets the heap grow to.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond

	limit   int64 // live + uncollected never exceed it
	share   int64 // most one holder may hold
	reserve int64 // top part of limit kept for small holders
	small   int64 // a holder holding at most this is small

	live      int64 // bytes held by holders
	released  int64 // bytes ever released (monotonic)
	collected int64 // released bytes that a finished GC cycle has freed
	forcing   bool  // a forced collection is running
	waiting   int   // readers waiting for room (tests, diagnostics)
	stopped   bool  // stop was called: no more sentinels
	aborted   bool  // abort was called: waiting readers give up
}

// errBudgetAborted is what a reader waiting for room gets once Shutdown's
// drain grace is over: a frame that could not get room by then never will.
var errBudgetAborted = errors.New("request budget closed: the server is shutting down")

// abort makes every reader waiting for room, now or later, give up
// (Shutdown, once the drain grace is over).
func (b *byteBudget) abort() {
	b.mu.Lock()
	b.aborted = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// budgetHolder is one connection's account in a byteBudget. Its field is
// guarded by the budget's mutex.
type budgetHolder struct {
	held int64
}

// minSmallHolding is the least a holder may hold and still count as small.
const minSmallHolding = 64 << 10

// newByteBudget returns a budget of limit bytes for requests of at most
// maxRequest bytes (limit is raised to maxRequest if below).
//
// The share is a quarter of the limit, at least maxRequest. The reserve is
// an eighth of the limit, but never so much that a frame of maxRequest
// bytes could not fit beside it; with the defaults (512 MiB, 100 MiB
// requests) that is a 128 MiB share and a 64 MiB reserve for holders of
// at most 1 MiB.
func newByteBudget(limit, maxRequest int64) *byteBudget {
	limit = max(limit, maxRequest)
	reserve := min(limit/8, limit-maxRequest)
	b := &byteBudget{
		limit:   limit,
		share:   max(limit/4, maxRequest),
		reserve: reserve,
		small:   max(reserve/64, minSmallHolding),
	}
	b.cond = sync.NewCond(&b.mu)
	b.mu.Lock()
	b.armLocked()
	b.mu.Unlock()
	return b
}

// grow replaces a buffer of from bytes that h holds by one of to bytes:
// once it returns, h holds to-from more, and the from bytes count as
// released (the old buffer is garbage once copied). It waits while the new
// buffer does not fit and gives up, holding what it held, when ctx ends.
func (b *byteBudget) grow(ctx context.Context, h *budgetHolder, from, to int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.fitsLocked(h, from, to) {
		if err := b.waitLocked(ctx, h, from, to); err != nil {
			return err
		}
	}
	h.held += to - from
	b.live += to - from
	b.released += from
	return nil
}

// fitsLocked reports whether h may swap a buffer of from bytes for one of
// to bytes now. While both exist (the copy) the process holds to more
// bytes, so that is what the limit is checked against.
func (b *byteBudget) fitsLocked(h *budgetHolder, from, to int64) bool {
	return b.withinShareLocked(h, from, to) && b.live+b.uncollectedLocked()+to <= b.limitForLocked(h, from, to)
}

// withinShareLocked: a holder over its share with other requests of its
// own in flight waits for those. Alone it may take up to a whole frame.
func (b *byteBudget) withinShareLocked(h *budgetHolder, from, to int64) bool {
	return h.held-from+to <= b.share || h.held == from
}

// limitForLocked is the part of the limit open to h after the swap: all
// of it while h stays small, all but the reserve otherwise.
func (b *byteBudget) limitForLocked(h *budgetHolder, from, to int64) int64 {
	if h.held-from+to <= b.small {
		return b.limit
	}
	return b.limit - b.reserve
}

func (b *byteBudget) waitLocked(ctx context.Context, h *budgetHolder, from, to int64) error {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.waiting++
	defer func() { b.waiting-- }()
	for !b.fitsLocked(h, from, to) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.aborted {
			return errBudgetAborted
		}
		if !b.forcing && b.uncollectedLocked() > 0 && b.withinShareLocked(h, from, to) &&
			b.live+to <= b.limitForLocked(h, from, to) {
			// Garbage is all that stands in the way: free it rather than
			// wait for a collection the heap may not trigger while
			// readers are stalled.
			b.forcing = true
			go b.forceGC(b.released)
		}
		b.cond.Wait()
	}
	return nil
}

// release returns n bytes h took. They count until collected.
func (b *byteBudget) release(h *budgetHolder, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	h.held -= n
	b.live -= n
	b.released += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *byteBudget) uncollectedLocked() int64 { return b.released - b.collected }

// forceGC runs a full collection, which frees everything released before
// it started (covers bytes), and returns the freed memory to the operating
// system: buffers of other sizes than the ones now wanted (a body's buffer
// doubles as it grows) would otherwise stay resident beside the new ones.
//
// It wakes the waiters even when a sentinel's cleanup already recorded
// covers: a waiter that found this collection running waited for it to
// end, and may need to force the next one for bytes released since.
func (b *byteBudget) forceGC(covers int64) {
	debug.FreeOSMemory()
	b.mu.Lock()
	b.forcing = false
	b.collectedLocked(covers)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// collectedLocked records that the bytes released before covers have been
// collected, and wakes the waiters if that freed anything.
func (b *byteBudget) collectedLocked(covers int64) {
	if covers > b.collected {
		b.collected = covers
		b.cond.Broadcast()
	}
}

// gcSentinel is allocated when the budget starts watching for the next GC
// cycle. Big enough (and with no pointers, so cheap) that the runtime does
// not combine it with other tiny objects, which could keep it alive.
type gcSentinel [32]byte

// armLocked allocates a sentinel whose cleanup runs once a GC cycle that
// started after this call has found it unreachable: by then every body
// released before now is unreachable too and has been freed (or is swept
// before the heap grows). The cleanup records that and arms the next one.
func (b *byteBudget) armLocked() {
	runtime.AddCleanup(new(gcSentinel), b.onGC, b.released)
}

func (b *byteBudget) onGC(covers int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.collectedLocked(covers)
	if !b.stopped {
		b.armLocked()
	}
}

// stop ends the sentinel chain (Shutdown), so that a stopped server's
// budget can be collected.
func (b *byteBudget) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
}

// held is the request bytes the budget's holders hold now.
func (b *byteBudget) held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live
}
