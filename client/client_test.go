package client

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

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
	if err != nil || len(accounts) != 1 || accounts[0].GetDebitsPosted() != 99 {
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
	if err != nil || accounts[0].GetCreditsPosted() != 5 {
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

// fakeLedger answers CreateTransfers with a function of the test.
type fakeLedger struct {
	ledgerv1.UnimplementedLedgerServiceServer
	createTransfers func(context.Context, *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error)
}

func (f *fakeLedger) CreateTransfers(ctx context.Context, req *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error) {
	return f.createTransfers(ctx, req)
}

// serveFake serves fake on an in-memory listener, with the server's request size limit, and
// returns a client with opts; attempts counts the requests the client sends (or tries to).
func serveFake(t *testing.T, fake *fakeLedger, opts Options, dialOptions ...grpc.DialOption) (c *Client, attempts *atomic.Int64) {
	t.Helper()
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(api.RequestBytesMax))
	ledgerv1.RegisterLedgerServiceServer(srv, fake)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	attempts = new(atomic.Int64)
	dialOptions = append([]grpc.DialOption{
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, callOptions ...grpc.CallOption) error {
			attempts.Add(1)
			return invoke(ctx, method, req, reply, cc, callOptions...)
		})}, dialOptions...)
	conn, err := grpc.NewClient("passthrough:///bufnet", dialOptions...)
	if err != nil {
		t.Fatal(err)
	}
	c = New(conn, opts)
	t.Cleanup(func() {
		_ = c.Close()
		_ = conn.Close()
		srv.Stop()
	})
	return c, attempts
}

// TestResourceExhaustedRetriedOnlyWithRetryInfo: the server's overload refusal (with
// RetryInfo) is retried until it passes; the same code without it is sent once, whether the
// handler answers it or gRPC's size limits do (the server's on receipt, the client's on send).
func TestResourceExhaustedRetriedOnlyWithRetryInfo(t *testing.T) {
	overloaded, err := status.New(codes.ResourceExhausted, "shard overloaded").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(api.OverloadedRetryDelay)})
	if err != nil {
		t.Fatal(err)
	}
	small := []*ledgerv1.Transfer{{Id: 1}}
	overServer := []*ledgerv1.Transfer{{Id: 1, BizId: strings.Repeat("x", api.RequestBytesMax)}}
	overClient := []*ledgerv1.Transfer{{Id: 1, BizId: strings.Repeat("x", 64<<10)}}
	for name, tc := range map[string]struct {
		refusals          int64 // how many requests the handler refuses before it takes one
		refusal           error
		transfers         []*ledgerv1.Transfer
		dialOptions       []grpc.DialOption
		code              codes.Code
		refuser           string // who refused, as gRPC words it
		attempts, handled int64  // requests the client sent, and those the handler saw
	}{
		"overloaded":            {refusals: 2, refusal: overloaded.Err(), transfers: small, code: codes.OK, attempts: 3, handled: 3},
		"no RetryInfo":          {refusals: 99, refusal: status.Error(codes.ResourceExhausted, "quota"), transfers: small, code: codes.ResourceExhausted, attempts: 1, handled: 1},
		"over the server limit": {transfers: overServer, code: codes.ResourceExhausted, refuser: "received message larger than max", attempts: 1, handled: 0},
		"over the client limit": {transfers: overClient, code: codes.ResourceExhausted, refuser: "trying to send message larger than max", attempts: 1, handled: 0,
			dialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32 << 10))}},
	} {
		t.Run(name, func(t *testing.T) {
			var handled atomic.Int64
			fake := &fakeLedger{createTransfers: func(context.Context, *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error) {
				if handled.Add(1) <= tc.refusals {
					return nil, tc.refusal
				}
				return &ledgerv1.CreateTransfersResponse{}, nil
			}}
			c, attempts := serveFake(t, fake, Options{BackoffMin: time.Millisecond}, tc.dialOptions...)
			_, err := c.CreateTransfers(context.Background(), tc.transfers)
			if code := status.Code(err); code != tc.code {
				t.Errorf("code %v (%v), want %v", code, err, tc.code)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.refuser) {
				t.Errorf("error %v, want one with %q", err, tc.refuser)
			}
			if n := attempts.Load(); n != tc.attempts {
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
			if n := handled.Load(); n != tc.handled {
				t.Errorf("the handler saw %d requests, want %d", n, tc.handled)
			}
		})
	}
}
