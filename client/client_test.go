package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// serve starts a ledger behind gRPC on an in-memory listener; intercept sees every call.
func serve(t *testing.T, intercept grpc.UnaryServerInterceptor) *Client {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := api.NewServer(api.NewService(l, nil), grpc.ChainUnaryInterceptor(intercept))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := New(conn, Options{BackoffMin: 1})
	t.Cleanup(func() {
		_ = c.Close()
		_ = conn.Close()
		srv.Stop()
		l.Stop()
		_ = store.Close()
	})
	return c
}

func openAccounts(t *testing.T, c *Client, n uint64) {
	t.Helper()
	var as []*ledgerv1.Account
	for id := uint64(1); id <= n; id++ {
		as = append(as, &ledgerv1.Account{Id: id, Ledger: 1, Code: 1})
	}
	if f, err := c.CreateAccounts(context.Background(), as); err != nil || len(f) > 0 {
		t.Fatalf("accounts: %v %v", f, err)
	}
}

// TestAutoBatching: a thousand goroutines each sending one transfer make far fewer requests,
// and every one of them gets its own result.
func TestAutoBatching(t *testing.T) {
	var requests atomic.Int64
	c := serve(t, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if _, ok := req.(*ledgerv1.CreateTransfersRequest); ok {
			requests.Add(1)
		}
		return h(ctx, req)
	})
	openAccounts(t, c, 10)
	const callers = 1000
	var wg sync.WaitGroup
	results := make([]ledgerv1.CreateTransferResult, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			amount := uint64(1)
			if i == 10 {
				amount = 0 // one bad transfer among them fails alone
			}
			r, err := c.CreateTransfer(context.Background(), &ledgerv1.Transfer{Id: uint64(i + 1),
				DebitAccountId: uint64(i%10 + 1), CreditAccountId: uint64((i+1)%10 + 1), Amount: amount, Ledger: 1, Code: 1})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	for i, r := range results {
		want := ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_OK
		if i == 10 {
			want = ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_AMOUNT_MUST_NOT_BE_ZERO
		}
		if r != want {
			t.Errorf("call %d: %v, want %v", i, r, want)
		}
	}
	if n := requests.Load(); n > callers/5 {
		t.Errorf("%d calls made %d requests: not batched", callers, n)
	} else {
		t.Logf("%d calls made %d requests", callers, n)
	}
	accounts, err := c.LookupAccounts(context.Background(), []uint64{1})
	if err != nil || len(accounts) != 1 || accounts[0].GetDebitsPosted().GetLo() != 99 || accounts[0].GetDebitsPosted().GetHi() != 0 {
		t.Errorf("account 1 after the calls: %v %v", accounts, err) // 100 calls debit it, one of them bad
	}
}

// TestRetryAfterLostReply: when the reply of a request that did run is lost, the retry answers
// EXISTS for its transfers and the client reports them created, once.
func TestRetryAfterLostReply(t *testing.T) {
	var lost atomic.Bool
	c := serve(t, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if _, ok := req.(*ledgerv1.CreateTransfersRequest); ok && lost.CompareAndSwap(false, true) {
			return nil, status.Error(codes.Unavailable, "reply lost on the way")
		}
		return resp, err
	})
	openAccounts(t, c, 2)
	failures, err := c.CreateTransfers(context.Background(), []*ledgerv1.Transfer{
		{Id: 1, DebitAccountId: 1, CreditAccountId: 2, Amount: 5, Ledger: 1, Code: 1},
		{Id: 2, DebitAccountId: 1, CreditAccountId: 2, Amount: 0, Ledger: 1, Code: 1}})
	if err != nil || len(failures) != 1 || failures[0].GetIndex() != 1 {
		t.Fatalf("after a retry: %v %v", failures, err)
	}
	if !lost.Load() {
		t.Fatal("no reply was lost")
	}
	accounts, err := c.LookupAccounts(context.Background(), []uint64{2})
	if err != nil || accounts[0].GetCreditsPosted().GetLo() != 5 || accounts[0].GetCreditsPosted().GetHi() != 0 {
		t.Errorf("account 2: %v %v (want 5: applied once)", accounts, err)
	}
}

func TestLinkedAloneIsRefused(t *testing.T) {
	c := serve(t, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	})
	_, err := c.CreateTransfer(context.Background(), &ledgerv1.Transfer{Id: 1, Flags: &ledgerv1.TransferFlags{Linked: true}})
	if err != ErrLinkedAlone {
		t.Errorf("linked alone: %v", err)
	}
}
