package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// Calls that queue while the exchanges are out go together, at most Batch to an exchange
// and MaxInFlight in all; each gets its own item's answer.
func TestBatchGathersWhatQueued(t *testing.T) {
	release := make(chan struct{})
	// 8 calls in flight in exchanges of up to 4: two exchanges at once.
	h, b := newBatchHarness(t, Config{MaxInFlight: 8, Batch: 4, QueueLimit: 64}, blockUntil(release, false))
	h.submit("a", "b") // the first goes alone; the second too (both exchanges taken, each of one)
	h.started(2)
	var orderNos []string
	for i := range 10 {
		orderNos = append(orderNos, fmt.Sprint("q", i))
	}
	h.submit(orderNos...)
	h.g.barrier()
	if s := h.g.Stats(); s.InFlight != 2 || s.Queued != 10 {
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
	total := 0
	for _, n := range sizes {
		if n > 4 {
			t.Fatalf("an exchange of %d calls, batch 4", n)
		}
		total += n
	}
	if total != 10 || len(sizes) < 3 {
		t.Fatalf("batches %v for 10 queued calls", sizes)
	}
	if m := b.max.Load(); m > 8 {
		t.Fatalf("%d calls at once, cap 8", m)
	}
}

// A batch that fails as a whole leaves every call in it unknown and counts one failure; an
// item the channel could not answer is unknown alone.
func TestBatchFailures(t *testing.T) {
	release, release2 := make(chan struct{}), make(chan struct{})
	h, b := newBatchHarness(t, Config{MaxInFlight: 2, Batch: 2, QueueLimit: 64}, func(ctx context.Context, c Call) (channel.Result, error) {
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
	if c := h.g.breaker.Counts(); c.TotalFailures != 1 {
		t.Fatalf("breaker counts %+v: one exchange failed", c)
	}
}

// A batch that outlives the timeout leaves all its calls unknown, with ErrTimeout.
func TestBatchTimeout(t *testing.T) {
	release := make(chan struct{})
	h, _ := newBatchHarness(t, Config{MaxInFlight: 2, Batch: 2, QueueLimit: 64, Timeout: time.Second},
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
