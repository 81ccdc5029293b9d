package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/ledgercore/ledger/channel"
)

// A slow channel, under light load: with the exchanges before calls wait for others all out
// (MaxInFlight/Batch of them, each of one call), the next call waits BatchWait, then goes;
// it is never refused far below MaxInFlight for waiting a round trip (found in review: it
// waited for an exchange to end, and a channel slower than QueueWait got it refused).
func TestBatchSlowChannelCallsAreNotRefusedBelowTheCap(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h, _ := newBatchHarness(t, Config{MaxInFlight: 8, Batch: 4, QueueLimit: 64, QueueWait: time.Second},
		blockUntil(release, false))
	h.submit("a", "b") // light load: each goes alone, and the two exchanges are taken
	h.started(2)
	h.submit("c")
	h.g.barrier()
	if s := h.g.Stats(); s.InFlight != 2 {
		t.Fatalf("stats %+v", s)
	}
	h.g.barrier()
	h.clock.Advance(h.g.cfg.BatchWait) // it waits for others no longer than this
	h.g.barrier()
	h.clock.Advance(time.Second) // the channel takes longer than QueueWait (but less than Timeout)
	h.g.barrier()
	select {
	case o := <-h.out:
		t.Fatalf("%s: %v (%v) with 2 calls in flight of MaxInFlight 8: a call waited for others and was refused",
			o.Call.Request.OrderNo, o.Kind, o.Err)
	default:
	}
	if s := h.g.Stats(); s.InFlight != 3 {
		t.Fatalf("c not sent with 2 of 8 slots taken: %+v", s)
	}
}

// An exchange the channel answered none of the calls of (every item 503 or 504) is a failure
// for the breaker, as the same calls alone would be (found in review: it counted as a
// success, so a channel answering batches but nothing in them never opened the circuit).
func TestBatchAnsweringNothingIsABreakerFailure(t *testing.T) {
	release := make(chan struct{})
	h, _ := newBatchHarness(t, Config{MaxInFlight: 4, Batch: 4, QueueLimit: 64,
		Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}},
		func(ctx context.Context, c Call) (channel.Result, error) {
			if c.Request.OrderNo == "hold" {
				<-release
				return answer(channel.Processing)(ctx, c)
			}
			return channel.Result{}, &channel.HTTPError{Code: http.StatusGatewayTimeout, Reason: "answer lost"}
		})
	h.submit("hold")
	h.started(1)
	h.submit("x1", "x2") // they queue behind the one exchange and go together
	h.g.barrier()
	close(release)
	got := h.outcomes(3)
	for _, n := range []string{"x1", "x2"} {
		if o := got[n]; o.Kind != Unknown {
			t.Fatalf("%s: %+v", n, o)
		}
	}
	if st, c := h.g.breaker.State(), h.g.breaker.Counts(); st != gobreaker.StateOpen {
		t.Fatalf("breaker %v (counts %+v) after an exchange in which no call was answered", st, c)
	}
}

// Stop abandons every call of a batch in flight exactly once; the batch's late answer
// delivers nothing more.
func TestBatchStopAbandonsEachCallOnce(t *testing.T) {
	release, hold := make(chan struct{}), make(chan struct{})
	b := newBatchClient(func(ctx context.Context, c Call) (channel.Result, error) {
		if c.Request.OrderNo == "hold" {
			<-hold
		} else {
			<-release
		}
		return answer(channel.Processing)(ctx, c)
	})
	out := make(chan Outcome, 16)
	clock := newFakeClock()
	g := New("t", b, Config{MaxInFlight: 4, Batch: 4, QueueLimit: 64, Clock: clock, RateLimit: 1e9}, func(o Outcome) { out <- o })
	g.Start()
	g.Submit(Call{Request: req("hold")})
	<-b.started
	for _, n := range []string{"y1", "y2", "y3"} {
		g.Submit(Call{Request: req(n)})
	}
	g.barrier()
	close(hold)
	if o := <-out; o.Call.Request.OrderNo != "hold" || o.Kind != Answered {
		t.Fatalf("%+v", o)
	}
	for range 3 {
		<-b.started
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Stop(ctx); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("Stop: %v", err)
	}
	seen := map[string]int{}
	for range 3 {
		o := <-out
		if o.Kind != Unknown || !errors.Is(o.Err, ErrAbandoned) {
			t.Fatalf("%+v", o)
		}
		seen[o.Call.Request.OrderNo]++
	}
	close(release)
	time.Sleep(50 * time.Millisecond)
	select {
	case o := <-out:
		t.Fatalf("a second outcome: %+v", o)
	default:
	}
	if len(seen) != 3 {
		t.Fatalf("%v", seen)
	}
}
