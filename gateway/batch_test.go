package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
)

func newBatchHarness(t *testing.T, cfg Config, fn func(context.Context, Call) (channel.Result, error)) (*harness, *batchClient) {
	t.Helper()
	b := newBatchClient(fn)
	return newHarnessOf(t, "test", cfg, b, b.fakeClient), b
}

func (b *batchClient) nextSize(t *testing.T) int {
	t.Helper()
	select {
	case n := <-b.sizes:
		return n
	case <-time.After(waitLimit):
		t.Fatal("no exchange")
		return 0
	}
}

// One call at a time goes alone (Do, not Batch): batching never makes a call wait for others.
func TestBatchLightLoadSendsEachCallAlone(t *testing.T) {
	h, b := newBatchHarness(t, Config{MaxInFlight: 64, Batch: 16}, answer(channel.Processing))
	for i := range 5 {
		h.submit(fmt.Sprint("o", i))
		if o := h.next(); o.Kind != Answered || o.Result.Status != channel.Processing {
			t.Fatalf("%+v", o)
		}
	}
	if n := len(b.sizes); n != 0 {
		t.Fatalf("%d batches for calls one at a time", n)
	}
	if n := b.calls.Load(); n != 5 {
		t.Fatalf("%d calls", n)
	}
}

// Calls that queue while the exchanges are out go together: a full batch at once, up to
// MaxInFlight calls in all; each gets its own item's answer.
func TestBatchGathersWhatQueued(t *testing.T) {
	release := make(chan struct{})
	// 8 calls in flight, in exchanges of up to 4: two exchanges before calls wait for others.
	h, b := newBatchHarness(t, Config{MaxInFlight: 8, Batch: 4, QueueLimit: 64}, blockUntil(release, false))
	h.submit("a", "b") // light load: each goes alone, at once
	h.started(2)
	var orderNos []string
	for i := range 10 {
		orderNos = append(orderNos, fmt.Sprint("q", i))
	}
	h.submit(orderNos...)
	h.g.barrier()
	// A full batch of 4 went at once, then 2 more (the cap of 8), and 4 wait.
	if s := h.g.Stats(); s.InFlight != 8 || s.Queued != 4 {
		t.Fatalf("stats %+v", s)
	}
	close(release)
	got := h.outcomes(12)
	for n, o := range got {
		if o.Kind != Answered || o.Result.Txn != "t-"+n {
			t.Fatalf("%s: %+v", n, o)
		}
	}
	var sizes []int
	for len(b.sizes) > 0 {
		sizes = append(sizes, <-b.sizes)
	}
	for _, n := range sizes {
		if n > 4 {
			t.Fatalf("an exchange of %d calls, batch 4", n)
		}
	}
	if len(sizes) < 2 || !slices.Contains(sizes, 4) || b.calls.Load() != 12 {
		t.Fatalf("batches %v, %d calls, for 2 alone and 10 queued", sizes, b.calls.Load())
	}
	if m := b.max.Load(); m > 8 {
		t.Fatalf("%d calls at once, cap 8", m)
	}
}

// Past MaxInFlight/Batch exchanges, a call waits for others at most BatchWait, then goes
// alone: never until its QueueWait is up, however slow the channel.
func TestBatchWaitBoundsTheWaitForOthers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h, _ := newBatchHarness(t, Config{MaxInFlight: 8, Batch: 4, QueueLimit: 64, BatchWait: 10 * time.Millisecond},
		blockUntil(release, false))
	h.submit("a", "b")
	h.started(2)
	h.submit("c")
	h.none() // the two exchanges are out: c waits for others
	if s := h.g.Stats(); s.InFlight != 2 || s.Queued != 1 {
		t.Fatalf("stats %+v", s)
	}
	h.clock.Advance(9 * time.Millisecond)
	h.none()
	h.clock.Advance(time.Millisecond)
	h.started(1)
	h.g.barrier()
	if s := h.g.Stats(); s.InFlight != 3 || s.Queued != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// With a Linger, a call waits that long for others even while few exchanges are out: the
// calls that come meanwhile share its exchange, and a full batch goes at once.
func TestBatchLingerGathersUnderLightLoad(t *testing.T) {
	h, b := newBatchHarness(t, Config{MaxInFlight: 64, Batch: 4, QueueLimit: 64, Linger: 2 * time.Millisecond},
		answer(channel.Processing))
	h.submit("a")
	h.none() // a waits for others
	h.clock.Advance(time.Millisecond)
	h.submit("b", "c")
	h.none()
	h.clock.Advance(time.Millisecond) // a's linger is up: a, b and c go together
	h.outcomes(3)
	if n := b.nextSize(t); n != 3 {
		t.Fatalf("an exchange of %d calls, want a, b and c together", n)
	}
	h.submit("d", "e", "f", "g", "h") // a full batch goes at once, the fifth waits
	h.outcomes(4)
	if n := b.nextSize(t); n != 4 {
		t.Fatalf("an exchange of %d calls, want a full batch of 4", n)
	}
	h.none()
	h.clock.Advance(2 * time.Millisecond)
	if o := h.next(); o.Call.Request.OrderNo != "h" {
		t.Fatalf("%+v", o)
	}
	if b.calls.Load() != 8 || b.max.Load() > 4 {
		t.Fatalf("%d calls, at most %d at once", b.calls.Load(), b.max.Load())
	}
}

// A Linger longer than BatchWait is cut to it; a Batch of 1 never lingers.
func TestBatchLingerBounds(t *testing.T) {
	cfg := Config{Batch: 4, BatchWait: 5 * time.Millisecond, Linger: time.Second}.withDefaults()
	if cfg.Linger != 5*time.Millisecond {
		t.Fatalf("linger %v, batch wait 5ms", cfg.Linger)
	}
	h, _ := newBatchHarness(t, Config{MaxInFlight: 4, Batch: 1, Linger: time.Second}, answer(channel.Processing))
	h.submit("a")
	if o := h.next(); o.Call.Request.OrderNo != "a" {
		t.Fatalf("%+v", o)
	}
}

// A batch that fails as a whole leaves every call in it unknown and counts one failure; an
// item the channel could not answer is unknown alone.
func TestBatchFailures(t *testing.T) {
	release, release2 := make(chan struct{}), make(chan struct{})
	// One exchange before calls wait for others (4/4): what queues behind it goes together.
	h, b := newBatchHarness(t, Config{MaxInFlight: 4, Batch: 4, QueueLimit: 64}, func(ctx context.Context, c Call) (channel.Result, error) {
		switch c.Request.OrderNo {
		case "hold":
			<-release
		case "hold2":
			<-release2
		}
		if c.Request.OrderNo == "lost" {
			return channel.Result{}, &channel.HTTPError{Code: http.StatusGatewayTimeout, Reason: "answer lost"}
		}
		return answer(channel.Processing)(ctx, c)
	})
	b.failBatch = func(items []channel.Item) error {
		if items[0].Request.OrderNo == "x1" {
			return errTransport
		}
		return nil
	}
	h.submit("hold")
	h.started(1)
	h.submit("x1", "x2") // queued behind the one exchange: they go together, and fail together
	h.g.barrier()
	close(release)
	got := h.outcomes(3)
	for _, n := range []string{"x1", "x2"} {
		if o := got[n]; o.Kind != Unknown || !errors.Is(o.Err, errTransport) {
			t.Fatalf("%s: %+v", n, o)
		}
	}
	h.submit("hold2")
	h.started(1)
	h.submit("lost", "fine")
	h.g.barrier()
	close(release2)
	got = h.outcomes(3)
	if o := got["lost"]; o.Kind != Unknown {
		t.Fatalf("lost: %+v", o)
	}
	if o := got["fine"]; o.Kind != Answered {
		t.Fatalf("fine: %+v", o)
	}
	if c := h.g.breaker.Counts(); c.TotalFailures != 1 || c.Requests != 4 {
		t.Fatalf("breaker counts %+v: one exchange of four failed", c)
	}
}

// A batch that outlives the timeout leaves all its calls unknown, with ErrTimeout.
func TestBatchTimeout(t *testing.T) {
	release := make(chan struct{})
	h, _ := newBatchHarness(t, Config{MaxInFlight: 4, Batch: 4, QueueLimit: 64, Timeout: time.Second},
		func(ctx context.Context, c Call) (channel.Result, error) {
			if c.Request.OrderNo == "hold" {
				<-release
				return answer(channel.Processing)(ctx, c)
			}
			<-ctx.Done()
			return channel.Result{}, ctx.Err()
		})
	h.submit("hold")
	h.started(1)
	h.submit("t1", "t2")
	h.g.barrier()
	close(release)
	if o := h.next(); o.Call.Request.OrderNo != "hold" || o.Kind != Answered {
		t.Fatalf("%+v", o)
	}
	h.started(2)
	h.clock.Advance(time.Second)
	got := h.outcomes(2)
	for n, o := range got {
		if o.Kind != Unknown || !errors.Is(o.Err, ErrTimeout) {
			t.Fatalf("%s: %+v", n, o)
		}
	}
}

// A rate limit lets a batch take only the tokens there now: the rest wait their turn.
func TestBatchRateLimit(t *testing.T) {
	release := make(chan struct{})
	h, b := newBatchHarness(t, Config{MaxInFlight: 8, Batch: 8, QueueLimit: 64, RateLimit: 10, Burst: 3,
		QueueWait: time.Second}, func(ctx context.Context, c Call) (channel.Result, error) {
		if c.Request.OrderNo == "hold" {
			<-release
		}
		return answer(channel.Processing)(ctx, c)
	})
	h.submit("hold")
	h.started(1)
	h.submit("r1", "r2", "r3", "r4")
	h.g.barrier()
	close(release)
	h.outcomes(3) // hold, and the two with tokens left of the burst
	if n := b.nextSize(t); n != 2 {
		t.Fatalf("a batch of %d with two tokens", n)
	}
	h.none()
	h.clock.Advance(100 * time.Millisecond)
	h.outcomes(1)
	h.none() // the loop has armed its timer for the next token before the clock moves
	h.clock.Advance(100 * time.Millisecond)
	h.outcomes(1)
	if b.calls.Load() != 5 {
		t.Fatalf("%d calls", b.calls.Load())
	}
}

// A client that cannot batch gets one call per exchange, whatever Batch says.
func TestBatchNeedsABatcher(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, Config{MaxInFlight: 4, Batch: 4}, blockUntil(release, false))
	h.submit("a", "b", "c", "d")
	h.started(4)
	if h.g.cfg.Batch != 1 {
		t.Fatalf("batch %d", h.g.cfg.Batch)
	}
	close(release)
	h.outcomes(4)
}
