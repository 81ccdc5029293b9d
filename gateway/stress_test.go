package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// TestStressOneOutcomePerSubmit submits calls from several goroutines to a client that
// answers, fails, answers garbage, yields or hangs until its timeout, while the operator
// flips the switch, the breaker opens and closes, and Stop comes in the middle of it all.
// Every Submit must end in exactly one Outcome; no Rejected call may have reached the
// client; the client never sees more than MaxInFlight calls at once.
func TestStressOneOutcomePerSubmit(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		for _, batch := range []int{1, 3} {
			t.Run(fmt.Sprintf("seed %d batch %d", seed, batch), func(t *testing.T) { stress(t, seed, batch) })
		}
	}
}

func stress(t *testing.T, seed uint64, batch int) {
	const (
		submitters = 8
		perSub     = 250
		total      = submitters * perSub
		maxIn      = 4
	)
	rng := rand.New(rand.NewPCG(seed, 0))
	behaviour := make(map[string]int, total) // fixed before the start: read-only after
	orderNo := func(s, i int) string { return fmt.Sprintf("s%d-%d", s, i) }
	for s := range submitters {
		for i := range perSub {
			behaviour[orderNo(s, i)] = rng.IntN(1000)
		}
	}
	fn := func(ctx context.Context, c Call) (channel.Result, error) {
		switch b := behaviour[c.Request.OrderNo]; {
		case b < 550:
			return answer([]channel.Status{channel.Processing, channel.Succeeded, channel.Failed, channel.NotFound}[b%4])(ctx, c)
		case b < 780:
			return fail(errTransport)(ctx, c)
		case b < 800:
			return answer(0)(ctx, c)
		case b < 995:
			for range b % 8 {
				runtime.Gosched()
			}
			return answer(channel.Succeeded)(ctx, c)
		default:
			<-ctx.Done() // until the timeout, or Stop gives up
			return channel.Result{}, ctx.Err()
		}
	}
	client := newFakeClient(fn)
	var cl channel.Client = client
	if batch > 1 {
		b := newBatchClient(fn)
		client, cl = b.fakeClient, b
	}

	var (
		mu       sync.Mutex
		got      = make(map[string][]Outcome, total)
		count    atomic.Int64
		allThere = make(chan struct{})
	)
	deliver := func(o Outcome) {
		mu.Lock()
		got[o.Call.Request.OrderNo] = append(got[o.Call.Request.OrderNo], o)
		mu.Unlock()
		if count.Add(1) == total {
			close(allThere)
		}
	}
	g := New("stress", cl, Config{
		Timeout: 5 * time.Millisecond, MaxInFlight: maxIn, Batch: batch, QueueLimit: 8, QueueWait: 5 * time.Millisecond,
		Linger:     time.Duration(seed%2) * time.Millisecond, // odd seeds linger (with batch > 1)
		InboxLimit: 32, RateLimit: 50000, Burst: 20,
		Breaker: BreakerConfig{ConsecutiveFailures: 3, OpenFor: 2 * time.Millisecond},
	}, deliver)
	g.Start()

	var wg sync.WaitGroup
	var submitted atomic.Int64
	stopAt := int64(total * 3 / 4) // Stop comes while a quarter is still to be submitted
	stopErr := make(chan error, 1)
	for s := range submitters {
		srng := rand.New(rand.NewPCG(seed, uint64(s)+1))
		wg.Go(func() {
			for i := range perSub {
				switch srng.IntN(500) {
				case 0:
					g.SetDegraded(true)
				case 1, 2, 3, 4, 5, 6, 7, 8:
					g.SetDegraded(false)
				}
				g.Submit(Call{Request: req(orderNo(s, i)), Query: srng.IntN(5) == 0})
				if submitted.Add(1) == stopAt {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
						defer cancel()
						stopErr <- g.Stop(ctx)
					}()
				}
				for range srng.IntN(40) {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-allThere:
	case <-time.After(waitLimit):
		t.Fatalf("%d outcomes for %d submits", count.Load(), total)
	}
	<-stopErr // nil, or ErrAbandoned

	mu.Lock()
	defer mu.Unlock()
	kinds := map[OutcomeKind]int{}
	for s := range submitters {
		for i := range perSub {
			n := orderNo(s, i)
			os := got[n]
			if len(os) != 1 {
				t.Fatalf("%s: %d outcomes", n, len(os))
			}
			o := os[0]
			kinds[o.Kind]++
			switch sent := client.sawCalls(n); {
			case o.Kind == Rejected && sent != 0:
				t.Fatalf("%s rejected (%v) but reached the client", n, o.Err)
			case o.Kind == Answered && sent != 1:
				t.Fatalf("%s answered but the client saw it %d times", n, sent)
			case o.Kind == Unknown && sent > 1:
				// Unknown means it may have reached the channel: once at most (a Stop that
				// gives up answers Unknown for calls handed to a worker not yet sent: safe,
				// they are queried, never sent again).
				t.Fatalf("%s unknown but the client saw it %d times", n, sent)
			}
		}
	}
	if m := client.max.Load(); m > maxIn {
		t.Fatalf("%d calls at once, cap %d", m, maxIn)
	}
	var counted uint64
	for _, n := range g.Stats().Outcomes {
		counted += n
	}
	if counted != total {
		t.Fatalf("stats count %d outcomes, want %d", counted, total)
	}
	t.Logf("seed %d: %v; rejections %v", seed, kinds, g.Stats().Rejections)
}
