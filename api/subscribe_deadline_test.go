package api

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// TestSubscriberThatDoesNotReadIsCutOff: a subscriber that stops reading blocks the server's
// send once gRPC's flow-control window is full; past the send deadline the subscription ends
// (RESOURCE_EXHAUSTED, saying why) and its follower slot is free again.
func TestSubscriberThatDoesNotReadIsCutOff(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	fatal := func(err error) { t.Errorf("fatal: %v", err) }
	seq, err := events.Start(store, events.Config{Fatal: fatal})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 1, Events: seq, Fatal: fatal})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := NewServer(NewService(l, nil, WithEvents(seq), WithSubscribeSendTimeout(300*time.Millisecond)))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	// A fixed window (no BDP growth): the server's sends block after 64 KiB unread.
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = conn.Close()
		seq.EndFollowers()
		srv.Stop()
		l.Stop()
		seq.Stop()
		_ = store.Close()
	}()
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := ledgerv1.NewLedgerServiceClient(conn).Subscribe(ctx, &ledgerv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for seq.Stats.Followers.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Events, 1,200 (some 50 KiB) a round, until the subscriber is cut off: far more than the
	// window. Nobody reads. (gRPC takes a message whole when the stream has any write quota
	// left, so one large message does not block its send: it is the next one that waits.)
	deadline := time.Now().Add(10 * time.Second)
	for r := 0; seq.Stats.Followers.Load() != 0; r++ {
		if time.Now().After(deadline) {
			t.Fatalf("a subscriber that reads nothing still follows after %d events", seq.Last())
		}
		if r < 100 {
			var ts []ledger.Transfer
			for i := range 400 {
				ts = append(ts, ledger.Transfer{ID: uint64(1 + r*1000 + i), DebitAccountID: 1, CreditAccountID: 2, Amount: 1,
					Ledger: 1, Code: 1})
			}
			if _, err := l.CreateTransfers(ts); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var last uint64
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("the stream ended with %v, want RESOURCE_EXHAUSTED", err)
			}
			break
		}
		last = m.GetEvents()[len(m.GetEvents())-1].GetSequence()
	}
	if last >= seq.Last() {
		t.Fatalf("the subscriber got everything (%d of %d): its sends never blocked", last, seq.Last())
	}
}
