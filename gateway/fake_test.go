package gateway

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/ledgercore/ledger/channel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClient is a channel.Client whose every call does what fn says, and which records
// what it was asked.
type fakeClient struct {
	fn      func(ctx context.Context, c Call) (channel.Result, error)
	started chan string // each call's OrderNo as it starts (buffered)

	calls    atomic.Int64
	cur, max atomic.Int64

	mu   sync.Mutex
	seen map[string]int // OrderNo → calls
}

func newFakeClient(fn func(ctx context.Context, c Call) (channel.Result, error)) *fakeClient {
	return &fakeClient{fn: fn, started: make(chan string, 4096), seen: map[string]int{}}
}

func (f *fakeClient) Do(ctx context.Context, r channel.Request) (channel.Result, error) {
	return f.handle(ctx, Call{Request: r})
}

func (f *fakeClient) Query(ctx context.Context, op channel.Op, orderNo string) (channel.Result, error) {
	return f.handle(ctx, Call{Request: channel.Request{Op: op, OrderNo: orderNo}, Query: true})
}

func (f *fakeClient) handle(ctx context.Context, c Call) (channel.Result, error) {
	f.enter(1)
	defer f.leave(1)
	f.record(c)
	return f.fn(ctx, c)
}

// enter counts n calls at the client, and the most there were at once.
func (f *fakeClient) enter(n int64) {
	n = f.cur.Add(n)
	for m := f.max.Load(); n > m && !f.max.CompareAndSwap(m, n); m = f.max.Load() {
	}
}

func (f *fakeClient) leave(n int64) { f.cur.Add(-n) }

// record notes that c reached the client.
func (f *fakeClient) record(c Call) {
	f.calls.Add(1)
	f.mu.Lock()
	f.seen[c.Request.OrderNo]++
	f.mu.Unlock()
	select {
	case f.started <- c.Request.OrderNo:
	default:
	}
}

// batchClient is a fakeClient that is also a channel.Batcher: each item of a batch does
// what fn says, one after another; an item whose context ends fails the whole exchange
// (as a batch's timeout does), and so does failBatch when it says so.
type batchClient struct {
	*fakeClient
	failBatch func(items []channel.Item) error
	sizes     chan int // each exchange's size (buffered)
}

func newBatchClient(fn func(ctx context.Context, c Call) (channel.Result, error)) *batchClient {
	return &batchClient{fakeClient: newFakeClient(fn), sizes: make(chan int, 4096)}
}

func (b *batchClient) Batch(ctx context.Context, items []channel.Item, out []channel.ItemResult) error {
	b.enter(int64(len(items)))
	defer b.leave(int64(len(items)))
	select {
	case b.sizes <- len(items):
	default:
	}
	for _, it := range items {
		b.record(Call{Request: it.Request, Query: it.Query})
	}
	if b.failBatch != nil {
		if err := b.failBatch(items); err != nil {
			return err
		}
	}
	for i, it := range items {
		res, err := b.fn(ctx, Call{Request: it.Request, Query: it.Query})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		out[i] = channel.ItemResult{Result: res, Err: err}
	}
	return nil
}

func (f *fakeClient) sawCalls(orderNo string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[orderNo]
}

func answer(s channel.Status) func(context.Context, Call) (channel.Result, error) {
	return func(_ context.Context, c Call) (channel.Result, error) {
		return channel.Result{Status: s, Txn: "t-" + c.Request.OrderNo, Amount: c.Request.Amount}, nil
	}
}

var errTransport = errors.New("connection reset")

func fail(err error) func(context.Context, Call) (channel.Result, error) {
	return func(context.Context, Call) (channel.Result, error) { return channel.Result{}, err }
}

// blockUntil blocks each call until release is closed (then answers succeeded) or, with
// honourCtx, until its context ends.
func blockUntil(release <-chan struct{}, honourCtx bool) func(context.Context, Call) (channel.Result, error) {
	return func(ctx context.Context, c Call) (channel.Result, error) {
		done := ctx.Done()
		if !honourCtx {
			done = nil
		}
		select {
		case <-release:
			return answer(channel.Succeeded)(ctx, c)
		case <-done:
			return channel.Result{}, ctx.Err()
		}
	}
}

// fakeClock moves only when told to; due timers run in Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

func (c *fakeClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := c.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// Advance moves the clock by d and runs the timers due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}

// harness runs one gateway over a fake client and collects its outcomes.
type harness struct {
	t      *testing.T
	g      *Gateway
	client *fakeClient
	clock  *fakeClock
	out    chan Outcome
}

const waitLimit = 5 * time.Second // a test waits no longer than this for something that must happen

func newHarness(t *testing.T, cfg Config, fn func(context.Context, Call) (channel.Result, error)) *harness {
	t.Helper()
	return newHarnessNamed(t, "test", cfg, fn)
}

func newHarnessNamed(t *testing.T, name string, cfg Config, fn func(context.Context, Call) (channel.Result, error)) *harness {
	t.Helper()
	return newHarnessOf(t, name, cfg, newFakeClient(fn), nil)
}

// newHarnessOf runs a gateway over client; fc is client's fakeClient (client itself when
// nil).
func newHarnessOf(t *testing.T, name string, cfg Config, client channel.Client, fc *fakeClient) *harness {
	t.Helper()
	if fc == nil {
		fc = client.(*fakeClient)
	}
	h := &harness{t: t, client: fc, out: make(chan Outcome, 4096)}
	if cfg.Clock == nil {
		h.clock = newFakeClock()
		cfg.Clock = h.clock
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = rate.Inf // tests that do not test the rate limit are not limited by it
	}
	h.g = New(name, client, cfg, func(o Outcome) { h.out <- o })
	h.g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.g.Stop(ctx); err != nil && !errors.Is(err, ErrAbandoned) {
			t.Errorf("Stop: %v", err)
		}
	})
	return h
}

func req(orderNo string) channel.Request {
	return channel.Request{Op: channel.Payout, OrderNo: orderNo, Amount: 100, Currency: "EUR", Account: "acct"}
}

func (h *harness) submit(orderNos ...string) {
	for _, o := range orderNos {
		h.g.Submit(Call{Request: req(o)})
	}
}

// next is the next outcome.
func (h *harness) next() Outcome {
	h.t.Helper()
	select {
	case o := <-h.out:
		return o
	case <-time.After(waitLimit):
		h.t.Fatal("no outcome")
		return Outcome{}
	}
}

// outcomes are the next n outcomes by OrderNo.
func (h *harness) outcomes(n int) map[string]Outcome {
	h.t.Helper()
	m := map[string]Outcome{}
	for range n {
		o := h.next()
		if _, dup := m[o.Call.Request.OrderNo]; dup {
			h.t.Fatalf("two outcomes for %s", o.Call.Request.OrderNo)
		}
		m[o.Call.Request.OrderNo] = o
	}
	return m
}

// started waits until the client has started n more calls.
func (h *harness) started(n int) {
	h.t.Helper()
	for range n {
		select {
		case <-h.client.started:
		case <-time.After(waitLimit):
			h.t.Fatal("call not started")
		}
	}
}

// none checks that no outcome is waiting (the loop has passed a barrier first).
func (h *harness) none() {
	h.t.Helper()
	h.g.barrier()
	select {
	case o := <-h.out:
		h.t.Fatalf("unexpected outcome %+v", o)
	default:
	}
}

func wantRejected(t *testing.T, o Outcome, why error) {
	t.Helper()
	if o.Kind != Rejected || !errors.Is(o.Err, why) {
		t.Fatalf("%s: got %v (%v), want rejected (%v)", o.Call.Request.OrderNo, o.Kind, o.Err, why)
	}
}

// eventually polls cond until it holds: for state that only wall-clock time changes (the
// breaker's open period, which gobreaker keeps on the machine's clock).
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}
