package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// subscriber follows the event stream the way a consumer should: it remembers the last
// sequence it saw, and after any disconnect (its own, or the server's death) subscribes
// again from there. It checks on the fly that every event is the one after the last.
type subscriber struct {
	client ledgerv1.LedgerServiceClient
	mu     sync.Mutex
	events []*ledgerv1.Event
	last   uint64
	resubs int
	err    error
}

// run follows until ctx ends; every dropEvery events it drops its stream on purpose.
func (s *subscriber) run(ctx context.Context, dropEvery int) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := s.client.Subscribe(sctx, &ledgerv1.SubscribeRequest{FromSequence: s.seen()})
		if err == nil {
			err = s.read(stream, dropEvery)
		}
		cancel()
		if err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled && ctx.Err() == nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.resubs++
		s.mu.Unlock()
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func (s *subscriber) read(stream ledgerv1.LedgerService_SubscribeClient, dropEvery int) error {
	got := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		for _, e := range resp.GetEvents() {
			if e.GetSequence() != s.last+1 {
				s.err = fmt.Errorf("event %d after %d: a gap or a repeat", e.GetSequence(), s.last)
				s.mu.Unlock()
				return s.err
			}
			s.last = e.GetSequence()
			s.events = append(s.events, e)
		}
		s.mu.Unlock()
		if got += len(resp.GetEvents()); got >= dropEvery {
			return nil // a disconnect of its own
		}
	}
}

func (s *subscriber) seen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// load writes transfers between accounts 1..n from several clients until stopped or the
// server is gone, and records the acknowledged ones.
type load struct {
	mu    sync.Mutex
	acked map[uint64]*ledgerv1.Transfer
	n     atomic.Int64
}

func (l *load) run(ctx context.Context, client ledgerv1.LedgerServiceClient, clients int, base uint64, stop *atomic.Bool) {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(base, uint64(c)))
			for seq := uint64(0); !stop.Load(); seq++ {
				batch := make([]*ledgerv1.Transfer, 40)
				for i := range batch {
					d := rng.Uint64N(e2eAccounts) + 1
					cr := (d+rng.Uint64N(e2eAccounts-1))%e2eAccounts + 1
					batch[i] = &ledgerv1.Transfer{Id: base | uint64(c+1)<<32 | seq<<8 | uint64(i), DebitAccountId: d,
						CreditAccountId: cr, Amount: rng.Uint64N(1000) + 1, Ledger: 1, Code: 1}
				}
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := client.CreateTransfers(rctx, &ledgerv1.CreateTransfersRequest{Transfers: batch})
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the server is gone, or not back yet
					continue
				}
				failed := map[uint32]bool{}
				for _, r := range resp.GetResults() {
					failed[r.GetIndex()] = true
				}
				l.mu.Lock()
				for i, tr := range batch {
					if !failed[uint32(i)] {
						l.acked[tr.GetId()] = tr
						l.n.Add(1)
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSubscribeAcrossKill: a subscriber that disconnects now and then, and loses the server
// to a SIGKILL and a restart, while a load writes, sees every event exactly once and in
// order: no gap and no repeat in its sequences, every acknowledged transfer once with both
// its postings, and the very events that a fresh subscription from the start reads back.
func TestSubscribeAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ledgerd := build(t, dir, "./cmd/ledgerd")
	dataDir := filepath.Join(dir, "data")
	addr := freePort(t) // the same address after the restart: the subscriber dials it again
	srv := start(t, ledgerd, dataDir, "--listen", addr)
	client, _, closeConn := dial(t, srv)
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var accounts []*ledgerv1.Account
	for id := uint64(1); id <= e2eAccounts; id++ {
		accounts = append(accounts, &ledgerv1.Account{Id: id, Ledger: 1, Code: 10})
	}
	if resp, err := client.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: accounts}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create accounts: %v %v", resp, err)
	}

	sub := &subscriber{client: client}
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan struct{})
	go func() { defer close(subDone); sub.run(subCtx, 5000) }()

	l := &load{acked: map[uint64]*ledgerv1.Transfer{}}
	var stop, stop2 atomic.Bool
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(ctx, client, 4, 1<<48, &stop) }()
	for deadline := time.Now().Add(20 * time.Second); (l.n.Load() < 8000 || sub.seen() < 5000) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	stop.Store(true)
	<-loadDone
	before := sub.seen()
	t.Logf("killed: %d transfers acknowledged, the subscriber at %d", l.n.Load(), before)

	srv = start(t, ledgerd, dataDir, "--listen", addr)
	loadDone = make(chan struct{})
	go func() { defer close(loadDone); l.run(ctx, client, 4, 2<<48, &stop2) }()
	for deadline := time.Now().Add(20 * time.Second); l.n.Load() < 16000 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stop2.Store(true)
	<-loadDone

	// Every acknowledged transfer reaches the subscriber: once as a transfer, twice in postings.
	want := map[uint64]*ledgerv1.Transfer{}
	l.mu.Lock()
	for id, tr := range l.acked {
		want[id] = tr
	}
	l.mu.Unlock()
	count := func() (transfers, postings map[uint64]int, last uint64) {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		transfers, postings = map[uint64]int{}, map[uint64]int{}
		for _, e := range sub.events {
			if tr := e.GetTransfer(); tr != nil {
				transfers[tr.GetId()]++
			}
			if p := e.GetPosting(); p != nil {
				postings[p.GetTransferId()]++
			}
		}
		return transfers, postings, sub.last
	}
	var transfers, postings map[uint64]int
	var last uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		transfers, postings, last = count()
		missing := 0
		for id := range want {
			if postings[id] < 2 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged transfers not (fully) streamed; subscriber at %d, err %v", missing, last, sub.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopSub()
	<-subDone
	if sub.err != nil {
		t.Fatal(sub.err)
	}
	for id, n := range transfers {
		if n != 1 || postings[id] != 2 {
			t.Fatalf("transfer %d: %d transfer events, %d postings; want 1 and 2", id, n, postings[id])
		}
	}
	for id := range want {
		if transfers[id] != 1 {
			t.Fatalf("acknowledged transfer %d: %d transfer events", id, transfers[id])
		}
	}
	if sub.resubs < 3 || before == 0 || len(want) < 16000 {
		t.Fatalf("the subscriber resubscribed %d times (at %d at the kill), %d transfers acknowledged: the test did not test",
			sub.resubs, before, len(want))
	}

	// A fresh subscription from the start reads back the very same events.
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	stream, err := client.Subscribe(fctx, &ledgerv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(sub.events); {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("fresh subscription after %d events: %v", i, err)
		}
		for _, e := range resp.GetEvents() {
			if i < len(sub.events) && !proto.Equal(e, sub.events[i]) {
				t.Fatalf("event %d: the resumed subscriber saw %v, a fresh one reads %v", i+1, sub.events[i], e)
			}
			i++
		}
	}
	// Past the stream's end: a clear error, not a wait.
	over, err := client.Subscribe(ctx, &ledgerv1.SubscribeRequest{FromSequence: last + 1_000_000})
	if err == nil {
		_, err = over.Recv()
	}
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("subscribe past the end: %v, want OUT_OF_RANGE", err)
	}
	t.Logf("%d events (%d transfers), %d subscriptions, %d before the kill", last, len(transfers), sub.resubs+1, before)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.exited:
		if err != nil {
			t.Fatalf("ledgerd after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ledgerd did not stop on SIGTERM")
	}
}
