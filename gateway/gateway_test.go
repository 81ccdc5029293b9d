package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/internal/syncbuf"
)

func TestOutcomeOfOneCall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		query   bool
		fn      func(context.Context, Call) (channel.Result, error)
		kind    OutcomeKind
		status  channel.Status // Answered
		err     error          // Unknown: errors.Is
		counted Count
	}{
		{"processing", false, answer(channel.Processing), Answered, channel.Processing, nil, Count{"payout", "processing"}},
		{"succeeded", false, answer(channel.Succeeded), Answered, channel.Succeeded, nil, Count{"payout", "succeeded"}},
		{"failed", false, answer(channel.Failed), Answered, channel.Failed, nil, Count{"payout", "failed"}},
		{"query not found", true, answer(channel.NotFound), Answered, channel.NotFound, nil, Count{"query", "not_found"}},
		{"query succeeded", true, answer(channel.Succeeded), Answered, channel.Succeeded, nil, Count{"query", "succeeded"}},
		{"transport error", false, fail(errTransport), Unknown, 0, errTransport, Count{"payout", "unknown"}},
		{"query transport error", true, fail(errTransport), Unknown, 0, errTransport, Count{"query", "unknown"}},
		{"unreadable status", false, answer(0), Unknown, 0, ErrBadAnswer, Count{"payout", "unknown"}},
		{"client panics", false, func(context.Context, Call) (channel.Result, error) { panic("boom") }, Unknown, 0, nil, Count{"payout", "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, tc.fn)
			h.g.Submit(Call{Request: req("o1"), Query: tc.query})
			o := h.next()
			if o.Kind != tc.kind || o.Call.Request.OrderNo != "o1" || o.Call.Query != tc.query {
				t.Fatalf("got %+v, want %v", o, tc.kind)
			}
			if tc.kind == Answered && (o.Err != nil || o.Result.Status != tc.status || o.Result.Txn != "t-o1") {
				t.Fatalf("got %+v, want answered %v", o, tc.status)
			}
			if tc.kind == Unknown && (o.Err == nil || tc.err != nil && !errors.Is(o.Err, tc.err)) {
				t.Fatalf("got error %v, want %v", o.Err, tc.err)
			}
			if n := h.client.sawCalls("o1"); n != 1 {
				t.Fatalf("client saw %d calls", n)
			}
			if s := h.g.Stats(); s.Outcomes[tc.counted] != 1 || len(s.Outcomes) != 1 || s.InFlight != 0 {
				t.Fatalf("stats %+v, want one %v", s, tc.counted)
			}
		})
	}
}

func TestTimeoutIsUnknown(t *testing.T) {
	h := newHarness(t, Config{Timeout: time.Second}, blockUntil(nil, true))
	h.submit("o1")
	h.started(1)
	h.clock.Advance(time.Second - 1)
	h.none()
	h.clock.Advance(1)
	o := h.next()
	if o.Kind != Unknown || !errors.Is(o.Err, ErrTimeout) {
		t.Fatalf("got %v (%v), want unknown (timeout)", o.Kind, o.Err)
	}
	if o.Latency != time.Second {
		t.Fatalf("latency %v", o.Latency)
	}
}

func TestBreaker(t *testing.T) {
	cfg := Config{Breaker: BreakerConfig{ConsecutiveFailures: 3, MinCalls: 1000, OpenFor: time.Hour}}

	t.Run("opens after consecutive failures", func(t *testing.T) {
		h := newHarness(t, cfg, fail(errTransport))
		for i := range 3 {
			h.submit(fmt.Sprint("f", i))
			if o := h.next(); o.Kind != Unknown {
				t.Fatalf("got %v", o.Kind)
			}
		}
		if c := h.g.Circuit(); c != CircuitOpen {
			t.Fatalf("circuit %v", c)
		}
		h.submit("o1")
		wantRejected(t, h.next(), ErrCircuitOpen)
		h.g.Submit(Call{Request: req("f0"), Query: true})
		wantRejected(t, h.next(), ErrCircuitOpen)
		if n := h.client.calls.Load(); n != 3 {
			t.Fatalf("client saw %d calls, want 3", n)
		}
		if s := h.g.Stats(); s.Rejections["circuit_open"] != 2 || s.Circuit != CircuitOpen {
			t.Fatalf("stats %+v", s)
		}
	})

	t.Run("definite answers are successes", func(t *testing.T) {
		h := newHarness(t, cfg, answer(channel.Failed))
		for i := range 10 {
			h.submit(fmt.Sprint("o", i))
			if o := h.next(); o.Kind != Answered {
				t.Fatalf("got %v", o.Kind)
			}
		}
		if c := h.g.Circuit(); c != CircuitClosed {
			t.Fatalf("circuit %v", c)
		}
	})

	t.Run("opens on the failure ratio", func(t *testing.T) {
		failing := false
		h := newHarness(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 100, FailureRatio: 0.5, MinCalls: 4, OpenFor: time.Hour}},
			func(ctx context.Context, c Call) (channel.Result, error) {
				if failing {
					return fail(errTransport)(ctx, c)
				}
				return answer(channel.Succeeded)(ctx, c)
			})
		for i := range 4 { // one at a time: the loop hands over failing with the call
			failing = i%2 == 1
			h.submit(fmt.Sprint("o", i))
			h.next()
		}
		if c := h.g.Circuit(); c != CircuitOpen {
			t.Fatalf("circuit %v after 2 failures in 4", c)
		}
	})
}

func TestBreakerHalfOpen(t *testing.T) {
	const openFor = 50 * time.Millisecond // gobreaker's own wall-clock time
	for _, tc := range []struct {
		name      string
		probeFail bool
		want      CircuitState
	}{
		{"probe succeeds: closes", false, CircuitClosed},
		{"probe fails: opens again", true, CircuitOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var mode func(context.Context, Call) (channel.Result, error)
			mode = fail(errTransport)
			var logged syncbuf.Buffer // the gateway's goroutines write it
			h := newHarness(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 2, OpenFor: openFor},
				Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{ReplaceAttr: dropTime}))},
				func(ctx context.Context, c Call) (channel.Result, error) { return mode(ctx, c) })
			h.submit("f1")
			h.next()
			h.submit("f2")
			h.next()
			if c := h.g.Circuit(); c != CircuitOpen {
				t.Fatalf("circuit %v", c)
			}
			eventually(t, func() bool { return h.g.Circuit() == CircuitHalfOpen })

			mode = blockUntil(release, false) // set while no call runs; the submit below publishes it
			if tc.probeFail {
				mode = func(ctx context.Context, c Call) (channel.Result, error) {
					<-release
					return channel.Result{}, errTransport
				}
			}
			h.submit("probe")
			h.started(1)
			h.submit("second") // the one probe is out
			wantRejected(t, h.next(), ErrCircuitOpen)
			close(release)
			o := h.next()
			if o.Call.Request.OrderNo != "probe" || (o.Kind == Unknown) != tc.probeFail {
				t.Fatalf("probe: %+v", o)
			}
			if c := h.g.Circuit(); c != tc.want {
				t.Fatalf("circuit %v, want %v", c, tc.want)
			}
			if n := h.client.sawCalls("second"); n != 0 {
				t.Fatal("a rejected call reached the client")
			}
			// Each change of the circuit is logged, in order; an opening as a warning.
			want := []string{
				`level=WARN msg="gateway: channel circuit opened: its calls fail fast (channel_unavailable) until a probe gets through" channel=test from=closed probe_after=50ms`,
				`level=INFO msg="gateway: channel circuit half-open: probe exchanges of one call each go through" channel=test probes=1`,
				`level=INFO msg="gateway: channel circuit closed: calls go to the channel again" channel=test from=half-open`,
			}
			if tc.probeFail {
				want[2] = strings.Replace(want[0], "from=closed", "from=half-open", 1)
			}
			if got := strings.Split(strings.TrimSpace(logged.String()), "\n"); !slices.Equal(got, want) {
				t.Fatalf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestDegraded(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, Config{MaxInFlight: 1}, blockUntil(release, false))
	h.submit("a", "b") // a in flight, b queued
	h.started(1)
	h.g.barrier()
	h.g.SetDegraded(true)
	wantRejected(t, h.next(), ErrDegraded) // b, from the queue
	h.submit("c")
	wantRejected(t, h.next(), ErrDegraded)
	h.g.Submit(Call{Request: req("a"), Query: true})
	wantRejected(t, h.next(), ErrDegraded)
	if s := h.g.Stats(); !s.Degraded || s.Rejections["degraded"] != 3 {
		t.Fatalf("stats %+v", s)
	}
	close(release)
	if o := h.next(); o.Kind != Answered || o.Call.Request.OrderNo != "a" {
		t.Fatalf("in-flight call: %+v", o)
	}
	h.g.SetDegraded(false)
	h.submit("d")
	if o := h.next(); o.Kind != Answered {
		t.Fatalf("after switching back on: %+v", o)
	}
	for _, o := range []string{"b", "c"} {
		if h.client.sawCalls(o) != 0 {
			t.Fatalf("%s reached the client while degraded", o)
		}
	}
}

func TestInFlightCapAndQueue(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, Config{MaxInFlight: 2, QueueLimit: 2}, blockUntil(release, false))
	h.submit("o1", "o2", "o3", "o4", "o5", "o6")
	h.started(2)
	h.g.barrier()
	busy := h.outcomes(2)
	for _, o := range busy {
		wantRejected(t, o, ErrBusy)
	}
	if s := h.g.Stats(); s.InFlight != 2 || s.Queued != 2 {
		t.Fatalf("stats %+v", s)
	}
	close(release)
	done := h.outcomes(4)
	for n, o := range done {
		if o.Kind != Answered {
			t.Fatalf("%s: %v", n, o.Kind)
		}
	}
	for n := range busy {
		if h.client.sawCalls(n) != 0 {
			t.Fatalf("rejected %s reached the client", n)
		}
	}
	if m := h.client.max.Load(); m != 2 {
		t.Fatalf("%d calls at once, cap 2", m)
	}
}

func TestQueueWaitForASlot(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, Config{MaxInFlight: 1, QueueWait: 100 * time.Millisecond}, blockUntil(release, false))
	h.submit("a")
	h.clock.Advance(50 * time.Millisecond)
	h.submit("b")
	h.started(1)
	h.g.barrier()
	h.clock.Advance(99 * time.Millisecond)
	h.none()
	h.clock.Advance(1 * time.Millisecond)
	o := h.next()
	wantRejected(t, o, ErrBusy)
	if o.Call.Request.OrderNo != "b" || o.Latency != 100*time.Millisecond {
		t.Fatalf("%+v", o)
	}
	close(release)
	if o := h.next(); o.Kind != Answered {
		t.Fatalf("%+v", o)
	}
	if h.client.sawCalls("b") != 0 {
		t.Fatal("b reached the client")
	}
}

func TestRateLimit(t *testing.T) {
	// 10/s with a burst of 2: two go at once, the third 100ms later (within the 150ms wait),
	// the fourth would go 200ms after it was submitted: rejected, and the fifth with it.
	h := newHarness(t, Config{RateLimit: 10, Burst: 2, QueueWait: 150 * time.Millisecond}, answer(channel.Succeeded))
	h.submit("o1", "o2", "o3", "o4", "o5")
	h.g.barrier()
	first := h.outcomes(2)
	if first["o1"].Kind != Answered || first["o2"].Kind != Answered {
		t.Fatalf("%+v", first)
	}
	h.clock.Advance(99 * time.Millisecond)
	h.none()
	if n := h.client.calls.Load(); n != 2 {
		t.Fatalf("%d calls before the token", n)
	}
	h.clock.Advance(time.Millisecond)
	rest := h.outcomes(3)
	if rest["o3"].Kind != Answered || rest["o3"].Latency != 100*time.Millisecond {
		t.Fatalf("o3: %+v", rest["o3"])
	}
	wantRejected(t, rest["o4"], ErrRateLimited)
	wantRejected(t, rest["o5"], ErrRateLimited)
	if h.client.sawCalls("o4")+h.client.sawCalls("o5") != 0 {
		t.Fatal("a rate-limited call reached the client")
	}
	// The rejected ones gave their tokens back: one more is there 100ms after o3's.
	h.clock.Advance(100 * time.Millisecond)
	h.submit("o6")
	if o := h.next(); o.Kind != Answered || o.Latency != 0 {
		t.Fatalf("o6: %+v", o)
	}
}

func TestStop(t *testing.T) {
	t.Run("waits for calls in flight", func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, Config{MaxInFlight: 1}, blockUntil(release, false))
		h.submit("a", "b")
		h.started(1)
		h.g.barrier()
		stopped := make(chan error)
		go func() { stopped <- h.g.Stop(context.Background()) }()
		wantRejected(t, h.next(), ErrStopping) // b
		close(release)
		if o := h.next(); o.Kind != Answered {
			t.Fatalf("a: %+v", o)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		h.submit("c")
		wantRejected(t, h.next(), ErrStopping)
	})

	t.Run("calls still running when ctx ends are unknown", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release) // the client ignores its context: let the workers go at the end
		h := newHarness(t, Config{MaxInFlight: 2}, blockUntil(release, false))
		h.submit("a", "b", "c")
		h.started(2)
		h.g.barrier()
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error)
		go func() { stopped <- h.g.Stop(ctx) }()
		wantRejected(t, h.next(), ErrStopping) // c
		cancel()
		for n, o := range h.outcomes(2) {
			if o.Kind != Unknown || !errors.Is(o.Err, ErrAbandoned) || !errors.Is(o.Err, context.Canceled) {
				t.Fatalf("%s: %v %v", n, o.Kind, o.Err)
			}
		}
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop: %v", err)
		}
		if s := h.g.Stats(); s.InFlight != 0 || s.Outcomes[Count{"payout", "unknown"}] != 2 {
			t.Fatalf("stats %+v", s)
		}
	})

	t.Run("contexts of calls in flight are cancelled", func(t *testing.T) {
		h := newHarness(t, Config{}, blockUntil(nil, true))
		h.submit("a")
		h.started(1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.g.Stop(ctx); err == nil {
			t.Fatal("Stop: no error with a call abandoned")
		}
		if o := h.next(); o.Kind != Unknown {
			t.Fatalf("%+v", o)
		}
		h.none() // the worker's own report, after the cancel, is not a second outcome
	})

	t.Run("before start", func(t *testing.T) {
		c := newFakeClient(answer(channel.Succeeded))
		out := make(chan Outcome, 1)
		g := New("x", c, Config{}, func(o Outcome) { out <- o })
		g.Submit(Call{Request: req("a")})
		if err := g.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantRejected(t, <-out, ErrStopping)
	})
}

func TestInboxFull(t *testing.T) {
	c := newFakeClient(answer(channel.Succeeded))
	out := make(chan Outcome, 4)
	g := New("x", c, Config{InboxLimit: 2}, func(o Outcome) { out <- o })
	g.Submit(Call{Request: req("a")}) // not started: the inbox holds them
	g.Submit(Call{Request: req("b")})
	g.Submit(Call{Request: req("c")})
	wantRejected(t, <-out, ErrBusy)
	g.Start()
	for range 2 {
		if o := <-out; o.Kind != Answered {
			t.Fatalf("%+v", o)
		}
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBreakerRunScalesWithInFlight: the run of consecutive failures that opens the circuit is
// an eighth of the calls in flight (at least DefaultBreakerFailures), unless configured.
func TestBreakerRunScalesWithInFlight(t *testing.T) {
	for _, tc := range []struct {
		inFlight  int
		set, want uint32
	}{{16, 0, DefaultBreakerFailures}, {256, 0, 32}, {256, 7, 7}} {
		c := Config{MaxInFlight: tc.inFlight, Breaker: BreakerConfig{ConsecutiveFailures: tc.set}}.withDefaults()
		if got := c.Breaker.ConsecutiveFailures; got != tc.want {
			t.Errorf("in flight %d, set %d: a run of %d, want %d", tc.inFlight, tc.set, got, tc.want)
		}
	}
}
