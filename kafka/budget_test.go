package kafka

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const mib = 1 << 20

// asyncAcquire starts b.acquire(ctx, h, n) and returns its result channel
// once the acquire waits or has returned.
func asyncAcquire(t *testing.T, b *byteBudget, ctx context.Context, h *budgetHolder, n int64) chan error {
	t.Helper()
	before := b.waiters()
	got := make(chan error, 1)
	go func() { got <- b.acquire(ctx, h, n) }()
	deadline := time.Now().Add(30 * time.Second)
	for b.waiters() == before && len(got) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("acquire neither waited nor returned")
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

func expectWaiting(t *testing.T, what string, got chan error) {
	t.Helper()
	select {
	case err := <-got:
		t.Fatalf("%s returned (%v), want it waiting", what, err)
	default:
	}
}

func expectDone(t *testing.T, what string, got chan error) {
	t.Helper()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second): // hang guard, not a timing assertion
		t.Fatalf("%s did not proceed", what)
	}
}

func mustAcquire(t *testing.T, b *byteBudget, h *budgetHolder, n int64) {
	t.Helper()
	if err := b.acquire(context.Background(), h, n); err != nil {
		t.Fatal(err)
	}
}

// The shares: 64 MiB for 8 MiB requests gives each connection 16 MiB and
// keeps 8 MiB for connections holding at most 128 KiB.
func TestByteBudgetShares(t *testing.T) {
	b := newByteBudget(64*mib, 8*mib)
	defer b.stop()
	if b.share != 16*mib || b.reserve != 8*mib || b.small != 128<<10 {
		t.Fatalf("share %d reserve %d small %d", b.share, b.reserve, b.small)
	}
	ctx := context.Background()

	// One connection: two 8 MiB requests fill its share; a third byte
	// waits for one of them, however much room the budget has.
	var a budgetHolder
	mustAcquire(t, b, &a, 8*mib)
	mustAcquire(t, b, &a, 8*mib)
	got := asyncAcquire(t, b, ctx, &a, 1)
	expectWaiting(t, "acquire past the connection's share", got)
	b.release(&a, 8*mib)
	expectDone(t, "acquire after the connection released", got)

	b.release(&a, 8*mib+1)

	// Released bytes count until a collection: the sentinel reports one.
	runtime.GC()
	deadline := time.Now().Add(30 * time.Second)
	for b.uncollected() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d released bytes still uncollected after a GC", b.uncollected())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}

	// Big holders fill all but the reserve: another big one waits, a
	// small one goes on.
	holders := make([]budgetHolder, 4)
	for i, n := range []int64{16 * mib, 16 * mib, 16 * mib, 8 * mib} {
		mustAcquire(t, b, &holders[i], n)
	}
	var big, small budgetHolder
	got = asyncAcquire(t, b, ctx, &big, 1*mib)
	expectWaiting(t, "big acquire into the reserve", got)
	mustAcquire(t, b, &small, 100<<10) // returns: the reserve is for it
	b.release(&holders[0], 16*mib)
	expectDone(t, "big acquire after room was freed", got)
	if live := b.inUse(); live != 40*mib+1*mib+100<<10 {
		t.Fatalf("in use %d", live)
	}
}

// Released bytes count until a collection frees them; a reader that only
// garbage stands in the way of forces one.
func TestByteBudgetCountsGarbage(t *testing.T) {
	b := newByteBudget(32*mib, 8*mib) // share 8 MiB, reserve 4 MiB
	defer b.stop()
	ctx := context.Background()
	hs := make([]budgetHolder, 4)
	for i := range hs {
		mustAcquire(t, b, &hs[i], 6*mib) // 24 MiB: all but the reserve
	}
	b.release(&hs[0], 6*mib)
	b.release(&hs[1], 6*mib)
	if b.inUse() != 12*mib {
		t.Fatalf("in use %d, want %d", b.inUse(), 12*mib)
	}
	var h budgetHolder
	// 12 live + up to 12 uncollected + 8 > 28: only a collection makes room.
	if err := b.acquire(ctx, &h, 8*mib); err != nil {
		t.Fatal(err)
	}
	if b.uncollected() != 0 {
		t.Fatalf("%d bytes uncollected after the forced collection", b.uncollected())
	}

	// grow swaps buffers: the old one becomes garbage.
	var g budgetHolder
	mustAcquire(t, b, &g, 2*mib)
	b.mu.Lock()
	released := b.released
	b.mu.Unlock()
	if err := b.grow(ctx, &g, 2*mib, 4*mib); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	released = b.released - released
	b.mu.Unlock()
	if g.held != 4*mib || b.inUse() != 24*mib || released != 2*mib {
		t.Fatalf("after grow: held %d in use %d, %d released", g.held, b.inUse(), released)
	}
}

// A forced collection that ends after a sentinel's cleanup has already
// recorded what it covers still wakes the readers waiting on it: one of
// them forces the next collection for the bytes released since (CI once
// saw readers wait on a lost wakeup until a collection came by itself).
func TestByteBudgetForcedCollectionWakesWaiters(t *testing.T) {
	b := newByteBudget(32*mib, 8*mib) // share 8 MiB, reserve 4 MiB
	defer b.stop()
	hs := make([]budgetHolder, 4)
	for i := range hs {
		mustAcquire(t, b, &hs[i], 6*mib)
	}
	b.release(&hs[0], 6*mib)
	b.release(&hs[1], 6*mib)
	// A collection is running (forcing) and the cleanup has recorded what
	// it covers, but 12 MiB released since are still uncollected.
	b.mu.Lock()
	b.forcing = true
	covers := b.collected
	b.mu.Unlock()
	var h budgetHolder
	got := asyncAcquire(t, b, context.Background(), &h, 8*mib)
	expectWaiting(t, "acquire behind garbage while a collection runs", got)
	b.forceGC(covers) // records nothing new
	expectDone(t, "acquire after the running collection ended", got)
	if b.uncollected() != 0 {
		t.Fatalf("%d bytes uncollected after the next forced collection", b.uncollected())
	}
}

func TestByteBudgetCancel(t *testing.T) {
	b := newByteBudget(16*mib, 8*mib)
	defer b.stop()
	var a, w budgetHolder
	mustAcquire(t, b, &a, 14*mib)
	cctx, cancel := context.WithCancel(context.Background())
	got := asyncAcquire(t, b, cctx, &w, 4*mib)
	expectWaiting(t, "acquire past the limit", got)
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled acquire: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancelled acquire did not return")
	}
	if b.inUse() != 14*mib || w.held != 0 {
		t.Fatalf("in use %d, waiter holds %d after a cancelled acquire", b.inUse(), w.held)
	}
	// One frame of the largest request size fits alone in a budget of
	// exactly that size.
	b.release(&a, 14*mib)
	var one budgetHolder
	if err := b.acquire(context.Background(), &one, 8*mib); err == nil {
		b.release(&one, 8*mib)
	} else {
		t.Fatal(err)
	}
	exact := newByteBudget(8*mib, 8*mib)
	defer exact.stop()
	if err := exact.acquire(context.Background(), &one, 8*mib); err != nil {
		t.Fatal(err)
	}
}

func TestNextBodyCap(t *testing.T) {
	for _, tc := range []struct{ cur, size, arrived, want int }{
		{0, 100, 1, 100},                        // small: whole
		{0, 10 * mib, 1, firstBodyChunk},        // large, one byte here: the first chunk
		{0, 10 * mib, 16 << 10, 16 << 10},       // what has arrived
		{0, 10 * mib, 20 * mib, 10 * mib},       // all of it is here
		{64 << 10, 10 * mib, 5, 128 << 10},      // doubles
		{64 << 10, 10 * mib, mib, mib + 64<<10}, // or takes what has arrived
		{8 * mib, 10 * mib, 1, 10 * mib},        // never past the size
	} {
		if got := nextBodyCap(tc.cur, tc.size, tc.arrived); got != tc.want {
			t.Errorf("nextBodyCap(%d, %d, %d) = %d, want %d", tc.cur, tc.size, tc.arrived, got, tc.want)
		}
	}
}

// Requests give their bytes back once handled: after traffic, nothing is
// held.
func TestBudgetReleasedAfterRequests(t *testing.T) {
	e := startEnv(t)
	e.createTopic("budget", 1, nil)
	cl := e.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "budget", Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for e.srv.budget.inUse() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d request bytes still held after the client closed", e.srv.budget.inUse())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Views and shorthands of the budget that only tests use: the server takes
// bytes with grow and reads none of these.

// acquire takes n bytes for h, waiting while they do not fit. It gives up
// (returning ctx's error) when ctx ends.
func (b *byteBudget) acquire(ctx context.Context, h *budgetHolder, n int64) error {
	return b.grow(ctx, h, 0, n)
}

// inUse reports the bytes held by requests and bodies being read.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live
}

// waiters reports the readers waiting for room.
func (b *byteBudget) waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// uncollected reports released bytes not yet known to be collected.
func (b *byteBudget) uncollected() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.uncollectedLocked()
}
