package events_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

type node struct {
	store *storage.Store
	seq   *events.Sequencer
	l     *actors.Ledger
}

func startNode(t testing.TB, fs vfs.FS, retain uint64) *node {
	t.Helper()
	return startNodeWith(t, fs, events.Config{RetainEvents: retain})
}

// startNodeWith starts a node whose sequencer has cfg (Fatal filled in).
func startNodeWith(t testing.TB, fs vfs.FS, cfg events.Config) *node {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 4, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	fatal := func(err error) { t.Errorf("fatal: %v", err) }
	cfg.Fatal = fatal
	seq, err := events.Start(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 4, Events: seq, Fatal: fatal, TickInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &node{store: store, seq: seq, l: l}
}

func (n *node) stop(t testing.TB) {
	n.l.Stop()
	n.seq.Stop()
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
}

// describe is an event as text: what a consumer sees of it.
func describe(e events.Event) string {
	switch {
	case e.Transfer != nil:
		return fmt.Sprintf("%d transfer %+v", e.Seq, *e.Transfer)
	case e.Posting != nil:
		return fmt.Sprintf("%d posting %+v", e.Seq, *e.Posting)
	case e.Exception >= 0:
		return fmt.Sprintf("%d exception %d/%d %+v", e.Seq, e.Order.ID, e.Exception, e.Order.Exceptions[e.Exception])
	default:
		return fmt.Sprintf("%d order %+v", e.Seq, *e.Order)
	}
}

// follow collects the stream from next until it has seen sequence until.
func follow(t *testing.T, seq *events.Sequencer, next, until uint64) []string {
	t.Helper()
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := errors.New("done")
	err := seq.Follow(ctx, next, events.FollowOptions{Coalesce: true}, func(batch []events.Event) error {
		for _, e := range batch {
			if e.Seq != next {
				t.Fatalf("event %d after %d: a gap or a repeat", e.Seq, next-1)
			}
			next++
			if e.Seq <= until {
				out = append(out, describe(e))
			}
		}
		if next > until {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("follow: %v", err)
	}
	return out
}

// workload runs a seeded mix over accounts on every shard: plain transfers, holds (some
// expiring), posts and voids, refusals, and transfers to credit-limited accounts on other
// shards (in flight, then posted or failed).
func workload(t testing.TB, l *actors.Ledger, rng *rand.Rand, base uint64, rounds int) {
	t.Helper()
	var holds []uint64
	for r := range rounds {
		var ts []ledger.Transfer
		for i := range 40 {
			id := base + uint64(r*100+i)
			t := ledger.Transfer{ID: id, DebitAccountID: 1 + rng.Uint64N(12), CreditAccountID: 1 + rng.Uint64N(12),
				Amount: 1 + rng.Uint64N(50), Ledger: 1, Code: 1}
			if t.DebitAccountID == t.CreditAccountID {
				t.CreditAccountID = t.DebitAccountID%12 + 1
			}
			switch k := rng.IntN(10); {
			case k < 2:
				t.Flags = ledger.TransferPending
				t.Timeout = uint32(rng.IntN(2))
				holds = append(holds, id)
			case k < 4 && len(holds) > 0:
				h := holds[rng.IntN(len(holds))]
				t.PendingID, t.Amount, t.DebitAccountID, t.CreditAccountID = h, 0, 0, 0
				t.Flags = ledger.TransferPostPending
				if k == 3 {
					t.Flags = ledger.TransferVoidPending
				}
			case k == 4:
				t.Amount = 1 << 40 // refused by a limited account
			}
			ts = append(ts, t)
		}
		// Post and void name the hold's accounts and code: look them up.
		for i := range ts {
			if ts[i].PendingID == 0 {
				continue
			}
			_ = l.Read(func(v *storage.Reader) error {
				h, found, err := v.Transfer(ts[i].PendingID)
				if found {
					ts[i].DebitAccountID, ts[i].CreditAccountID = h.DebitAccountID, h.CreditAccountID
				}
				return err
			})
		}
		if _, err := l.CreateTransfers(ts); err != nil {
			t.Fatal(err)
		}
	}
}

func openAccounts(t testing.TB, l *actors.Ledger) {
	t.Helper()
	var as []ledger.Account
	for id := uint64(1); id <= 12; id++ {
		a := ledger.Account{ID: id, Ledger: 1, Code: 1}
		switch id % 3 {
		case 0:
			a.Flags = ledger.AccountDebitsMustNotExceedCredits
		case 1:
			a.Flags = ledger.AccountCreditsMustNotExceedDebits | ledger.AccountHistory
		}
		as = append(as, a)
	}
	if _, err := l.CreateAccounts(as); err != nil {
		t.Fatal(err)
	}
}

// TestStreamLiveEqualsStored: what a follower sees live (from memory) equals what a follower
// reads back from the store after a restart (from the logs' references), event for event,
// and sequences go on without a gap after the restart.
func TestStreamLiveEqualsStored(t *testing.T) {
	fs := vfs.NewMem()
	n := startNode(t, fs, 0)
	openAccounts(t, n.l)
	var live []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = n.seq.Follow(ctx, 1, events.FollowOptions{}, func(batch []events.Event) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range batch {
				live = append(live, describe(e))
			}
			return nil
		})
	}()
	// The follower attaches: rounds from here are captured, and it reads them from the ring.
	for deadline := time.Now().Add(10 * time.Second); !n.seq.Capturing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the follower never attached")
		}
	}
	storeReads := n.seq.Stats.StoreReads.Load()
	workload(t, n.l, rand.New(rand.NewPCG(1, 2)), 1000, 30)
	time.Sleep(1200 * time.Millisecond) // holds with a 1 s timeout expire
	last := n.seq.Last()
	seen := func() uint64 { mu.Lock(); defer mu.Unlock(); return uint64(len(live)) }
	for deadline := time.Now().Add(10 * time.Second); seen() < last && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Live means from memory: a follower that fell back to the store would compare the store
	// with itself.
	readsFromStore := n.seq.Stats.StoreReads.Load() - storeReads
	n.stop(t)
	if uint64(len(live)) != last || last < 2000 {
		t.Fatalf("live follower saw %d events of %d", len(live), last)
	}
	if readsFromStore != 0 {
		t.Fatalf("the live follower read %d batches from the store, not the ring", readsFromStore)
	}
	n = startNode(t, fs, 0)
	defer n.stop(t)
	if n.seq.Last() != last {
		t.Fatalf("after the restart the stream ends at %d, before at %d", n.seq.Last(), last)
	}
	stored := follow(t, n.seq, 1, last)
	kinds := map[string]int{}
	for i := range live {
		if live[i] != stored[i] {
			t.Fatalf("event %d live:\n%s\nstored:\n%s", i+1, live[i], stored[i])
		}
		var seq uint64
		var kind string
		fmt.Sscanf(live[i], "%d %s", &seq, &kind)
		kinds[kind]++
	}
	for _, state := range []string{"State:1", "State:2", "State:3", "State:4", "State:5", "State:6", "State:7"} {
		found := false
		for _, e := range live {
			if strings.Contains(e, state+" ") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no transfer event with %s: the workload does not cover it", state)
		}
	}
	workload(t, n.l, rand.New(rand.NewPCG(3, 4)), 100000, 2)
	more := follow(t, n.seq, last+1, last+10)
	if len(more) < 10 {
		t.Fatalf("after the restart: %d events", len(more))
	}
	t.Logf("%d events: %v", last, kinds)
}

// TestRetentionTrims: with retention by count, a follower asking for a trimmed sequence
// gets ErrTrimmed naming the oldest kept, and one starting there reads on.
func TestRetentionTrims(t *testing.T) {
	fs := vfs.NewMem()
	n := startNode(t, fs, 500)
	defer n.stop(t)
	openAccounts(t, n.l)
	workload(t, n.l, rand.New(rand.NewPCG(5, 6)), 1000, 20)
	deadline := time.Now().Add(10 * time.Second)
	for n.seq.Horizon() == 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	h, last := n.seq.Horizon(), n.seq.Last()
	if h == 1 || last+1-h < 500 {
		t.Fatalf("horizon %d, last %d: retention kept too little or nothing was trimmed", h, last)
	}
	err := n.seq.Follow(context.Background(), 1, events.FollowOptions{}, func([]events.Event) error { return nil })
	var te *events.TrimmedError
	if !errors.As(err, &te) || te.Oldest != h {
		t.Fatalf("follow from 1: %v, want trimmed with oldest %d", err, h)
	}
	got := follow(t, n.seq, h, last)
	if uint64(len(got)) != last+1-h {
		t.Fatalf("from the horizon: %d events, want %d", len(got), last+1-h)
	}
}

// TestUnindexedRoundsIndexedAtStart: rounds that are durable in their logs but never got
// sequences (the ledger ran without the sequencer here, as after a crash between a commit
// and its indexing) are numbered at the next start, each log in its own order, before
// anything new; and a follower reads them all.
func TestUnindexedRoundsIndexedAtStart(t *testing.T) {
	fs := vfs.NewMem()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 4, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 4, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	openAccounts(t, l)
	workload(t, l, rand.New(rand.NewPCG(13, 14)), 1000, 10)
	l.Stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, fs, 0)
	defer n.stop(t)
	last := n.seq.Last()
	if last < 500 {
		t.Fatalf("%d events indexed at start", last)
	}
	got := follow(t, n.seq, 1, last)
	// Each transfer's first record comes before any posting of it on another shard: a
	// debit round precedes the credit round it causes.
	seen := map[uint64]bool{}
	for _, e := range got {
		var seq, id uint64
		if _, err := fmt.Sscanf(e, "%d transfer {ID:%d", &seq, &id); err == nil {
			seen[id] = true
		}
		if _, err := fmt.Sscanf(e, "%d posting {Account:%d", &seq, &id); err == nil {
			var tid uint64
			i := strings.Index(e, "TransferID:")
			fmt.Sscanf(e[i:], "TransferID:%d", &tid)
			if !seen[tid] {
				t.Fatalf("event %d: a posting of transfer %d before the transfer", seq, tid)
			}
		}
	}
	workload(t, n.l, rand.New(rand.NewPCG(15, 16)), 100000, 1)
	if more := follow(t, n.seq, last+1, last+1); len(more) == 0 {
		t.Fatal("no event after the indexed ones")
	}
}
