package api

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// startLedger runs a ledger of shards on an in-memory store whose snapshot iterators read at
// most iterKeys keys each.
func startLedger(t *testing.T, shards uint32, iterKeys int, cfg actors.Config) *actors.Ledger {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: shards, CacheBytes: 1 << 20, SnapshotIterKeysMax: iterKeys})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shards = shards
	cfg.Fatal = func(err error) { t.Errorf("fatal: %v", err) }
	l, err := actors.Start(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop(); _ = store.Close() })
	return l
}

// TestVerifyLimits: one Verify at a time (ABORTED), at most one start per interval
// (RESOURCE_EXHAUSTED with the wait in RetryInfo); a refusal uses up no start, and each
// outcome is counted.
func TestVerifyLimits(t *testing.T) {
	l := startLedger(t, 1, 0, actors.Config{})
	m := NewMetrics()
	svc := NewService(l, m, WithVerifyInterval(time.Hour))
	ctx := context.Background()
	if v, err := svc.Verify(ctx, &ledgerv1.VerifyRequest{}); err != nil || len(v.GetProblems()) > 0 {
		t.Fatalf("first verify: %v %v", v, err)
	}
	_, err := svc.Verify(ctx, &ledgerv1.VerifyRequest{})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || len(st.Details()) != 1 {
		t.Fatalf("second verify within the interval: %v", err)
	}
	if ri, ok := st.Details()[0].(*errdetails.RetryInfo); !ok || ri.GetRetryDelay().AsDuration() < 59*time.Minute {
		t.Errorf("retry info: %v", st.Details()[0])
	}

	free := NewService(l, m, WithVerifyInterval(0))
	free.verify.running.Lock() // a Verify in progress
	if _, err := free.Verify(ctx, &ledgerv1.VerifyRequest{}); status.Code(err) != codes.Aborted {
		t.Fatalf("verify while one runs: %v", err)
	}
	free.verify.running.Unlock()
	for range 2 {
		if _, err := free.Verify(ctx, &ledgerv1.VerifyRequest{}); err != nil {
			t.Fatalf("verify without a rate limit: %v", err)
		}
	}
	for outcome, want := range map[string]float64{verifyClean: 3, verifyRate: 1, verifyRunning: 1, verifyProblems: 0, verifyFailed: 0} {
		var got dto.Metric
		if err := svc.verify.total.WithLabelValues(outcome).Write(&got); err != nil || got.GetCounter().GetValue() != want {
			t.Errorf("ledger_verify_total{outcome=%q} = %v, want %v (%v)", outcome, got.GetCounter().GetValue(), want, err)
		}
	}

	g := newVerifyGate(10*time.Second, nil)
	at := time.Unix(1000, 0)
	if err := g.enter(at); err != nil {
		t.Fatal(err)
	}
	g.running.Unlock()
	for _, d := range []time.Duration{0, 5 * time.Second, 9 * time.Second} {
		if err := g.enter(at.Add(d)); err == nil {
			t.Fatalf("a start %v after the last admitted", d)
		}
	}
	if err := g.enter(at.Add(10 * time.Second)); err != nil {
		t.Fatalf("a start one interval later: %v", err)
	}
	g.running.Unlock()
}

// TestVerifyUnderLoadFindsNoProblems: Verify runs again and again, its snapshot read by
// iterators of a few keys each, while transfers within and across four shards (some into a
// hot account, buffered) commit: double entry per ledger and transit against the outboxes
// hold in every answer, and the counts only grow.
func TestVerifyUnderLoadFindsNoProblems(t *testing.T) {
	l := startLedger(t, 4, 5, actors.Config{HotFlushInterval: 5 * time.Millisecond})
	svc := NewService(l, nil, WithVerifyInterval(0))
	ctx := context.Background()
	const accounts = 40
	var as []*ledgerv1.Account
	for id := uint64(1); id <= accounts; id++ {
		a := &ledgerv1.Account{Id: id, Ledger: 1, Code: 1}
		if id == 1 {
			a.Flags = &ledgerv1.AccountFlags{Hot: true}
		}
		as = append(as, a)
	}
	if resp, err := svc.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: as}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("accounts: %v %v", resp.GetResults(), err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range uint64(3) {
		wg.Go(func() {
			id := (w + 1) << 32
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var ts []*ledgerv1.Transfer
				for range 20 {
					id++
					d, c := id%accounts+1, (id*7+i)%accounts+1
					if d == c {
						c = 1 // the hot account
					}
					ts = append(ts, tr(id, d, c, id%50+1))
				}
				if _, err := svc.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts}); err != nil {
					t.Errorf("transfers: %v", err)
					return
				}
			}
		})
	}
	var postings uint64
	for i := range 8 {
		time.Sleep(20 * time.Millisecond) // transfers commit meanwhile
		v, err := svc.Verify(ctx, &ledgerv1.VerifyRequest{})
		if err != nil || len(v.GetProblems()) > 0 {
			t.Errorf("verify %d under load: %v %v", i, v.GetProblems(), err)
			break
		}
		if v.GetPostings() < postings {
			t.Errorf("verify %d: %d postings, fewer than the %d before", i, v.GetPostings(), postings)
		}
		postings = v.GetPostings()
	}
	close(stop)
	wg.Wait()
	if postings < 100 {
		t.Fatalf("%d postings verified: too few for parts of 5 keys to matter", postings)
	}
	t.Logf("the last verify read %d postings", postings)
}
