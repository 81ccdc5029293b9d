package client

import (
	"context"
	"errors"
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
		if info.FullMethod == ledgerv1.LedgerService_CreateTransfers_FullMethodName {
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
	if n := requests.Load(); n == 0 || n > callers/5 {
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
		// By method: the server decodes CreateTransfers into a request of its own (api).
		if info.FullMethod == ledgerv1.LedgerService_CreateTransfers_FullMethodName && lost.CompareAndSwap(false, true) {
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

// stalledLedger is a server that holds every request it gets while stalling, until release
// or until the request's context ends; received has the ids of each request, in order.
type stalledLedger struct {
	fakeLedger
	stalling atomic.Bool
	release  chan struct{}
	received chan []uint64
}

func newStalledLedger() *stalledLedger {
	s := &stalledLedger{release: make(chan struct{}), received: make(chan []uint64, 16)}
	s.stalling.Store(true)
	s.createTransfers = func(ctx context.Context, req *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error) {
		var ids []uint64
		for _, transfer := range req.GetTransfers() {
			ids = append(ids, transfer.GetId())
		}
		s.received <- ids
		if s.stalling.Load() {
			select {
			case <-s.release:
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		return &ledgerv1.CreateTransfersResponse{}, nil
	}
	return s
}

// next is the ids of the next request the server gets.
func (s *stalledLedger) next(t *testing.T) []uint64 {
	t.Helper()
	select {
	case ids := <-s.received:
		return ids
	case <-time.After(2 * time.Second):
		t.Fatal("no request reached the server")
		return nil
	}
}

// createTransfer calls CreateTransfer in a goroutine and answers on the returned channel.
func createTransfer(ctx context.Context, c *Client, id uint64) <-chan error {
	answered := make(chan error, 1)
	go func() {
		result, err := c.CreateTransfer(ctx, &ledgerv1.Transfer{Id: id})
		if err == nil && result != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_OK {
			err = errors.New(result.String())
		}
		answered <- err
	}()
	return answered
}

// answerWithin is the answer of a call, which must come within limit.
func answerWithin(t *testing.T, answered <-chan error, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-answered:
		return err
	case <-time.After(limit):
		t.Fatalf("no answer within %v", limit)
		return nil
	}
}

// TestStalledServer: a call returns when its context ends, with the context's error as
// DEADLINE_EXCEEDED or CANCELED, while the server holds its request; and once the batches'
// deadlines (the caller's, or RequestTimeout) free the only request slot, the client works.
func TestStalledServer(t *testing.T) {
	stalled := newStalledLedger()
	const requestTimeout = 400 * time.Millisecond
	c, _ := serveFake(t, &stalled.fakeLedger, Options{BatchesInFlightMax: 1, RequestTimeout: requestTimeout})
	t.Cleanup(func() { close(stalled.release) }) // runs before the server stops

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := answerWithin(t, createTransfer(ctx, c, 1), 2*time.Second)
	if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v (code %v)", err, status.Code(err))
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("deadline of 100 ms answered after %v", elapsed)
	}
	if ids := stalled.next(t); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("first request %v, want [1]", ids)
	}

	// The caller sets no deadline: its request is bounded by RequestTimeout.
	ctx, cancel = context.WithCancel(context.Background())
	answered := createTransfer(ctx, c, 2)
	if ids := stalled.next(t); len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("second request %v, want [2]", ids)
	}
	cancel()
	err = answerWithin(t, answered, requestTimeout/2) // before its request ends
	if status.Code(err) != codes.Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v (code %v)", err, status.Code(err))
	}

	stalled.stalling.Store(false)
	if err := answerWithin(t, createTransfer(context.Background(), c, 3), 2*time.Second); err != nil {
		t.Errorf("after the stall: %v", err)
	}
}

// TestEndedCallIsNotSent: a call whose context ends while it waits in the queue is left out
// of the batch: the server never sees its transfer. The test holds the only request slot
// itself, so that it knows which call waits where.
func TestEndedCallIsNotSent(t *testing.T) {
	server := newStalledLedger()
	server.stalling.Store(false)
	c, _ := serveFake(t, &server.fakeLedger, Options{BatchesInFlightMax: 1})
	c.slots <- struct{}{}
	first := &call{ctx: context.Background(), t: &ledgerv1.Transfer{Id: 1}, done: make(chan callResult, 1)}
	c.calls <- first
	waitFor(t, "the batcher to take the first call", func() bool { return len(c.calls) == 0 })

	ctx, cancel := context.WithCancel(context.Background())
	answered := createTransfer(ctx, c, 2)
	waitFor(t, "the second call to be queued", func() bool { return len(c.calls) == 1 })
	cancel()
	if err := answerWithin(t, answered, time.Second); status.Code(err) != codes.Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled call: %v (code %v)", err, status.Code(err))
	}

	<-c.slots // the batcher may send now
	select {
	case r := <-first.done:
		if r.err != nil {
			t.Errorf("first call: %v", r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("first call: no answer")
	}
	if ids := server.next(t); len(ids) != 1 || ids[0] != 1 {
		t.Errorf("request %v, want [1] alone", ids)
	}
	// One request in flight at a time: the canceled call, had it been sent, would have
	// reached the server before the next call's answer.
	if err := answerWithin(t, createTransfer(context.Background(), c, 3), 2*time.Second); err != nil {
		t.Errorf("last call: %v", err)
	}
	if ids := server.next(t); len(ids) != 1 || ids[0] != 3 {
		t.Errorf("request %v, want [3]", ids)
	}
}

// waitFor polls until done holds.
func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !done(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 2 s for %s", what)
		}
	}
}

// TestBatchDeadline: a batch ends by its calls' latest deadline, and at most RequestTimeout
// from now, which is also the bound when any call has no deadline.
func TestBatchDeadline(t *testing.T) {
	c := &Client{opts: Options{RequestTimeout: time.Second}}
	now := time.Now()
	soon, cancelSoon := context.WithDeadline(context.Background(), now.Add(100*time.Millisecond))
	defer cancelSoon()
	later, cancelLater := context.WithDeadline(context.Background(), now.Add(200*time.Millisecond))
	defer cancelLater()
	tooLate, cancelTooLate := context.WithDeadline(context.Background(), now.Add(time.Hour))
	defer cancelTooLate()
	for name, tc := range map[string]struct {
		contexts []context.Context
		after    time.Duration // the deadline, from now
	}{
		"latest of the calls'":       {[]context.Context{later, soon}, 200 * time.Millisecond},
		"RequestTimeout at most":     {[]context.Context{soon, tooLate}, time.Second},
		"RequestTimeout without one": {[]context.Context{soon, context.Background()}, time.Second},
	} {
		var batch []*call
		for _, ctx := range tc.contexts {
			batch = append(batch, &call{ctx: ctx})
		}
		// RequestTimeout counts from the call to deadline, a little after now.
		if got := c.deadline(batch).Sub(now); got < tc.after || got > tc.after+100*time.Millisecond {
			t.Errorf("%s: deadline in %v, want %v", name, got, tc.after)
		}
	}
}

// TestEncodedAhead: a request encoded ahead holds its own bytes. The messages it was made of
// are changed before it is sent (as a caller reusing them for its next request does), and
// what the ledger books is what they held when encoded; a biz_id proto.Marshal refuses is the
// call's error, and nothing is booked.
func TestEncodedAhead(t *testing.T) {
	c := serve(t, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	})
	openAccounts(t, c, 2)
	ts := []*ledgerv1.Transfer{
		{Id: 1, DebitAccountId: 1, CreditAccountId: 2, Amount: 5, Ledger: 1, Code: 1},
		{Id: 2, DebitAccountId: 1, CreditAccountId: 2, Amount: 0, Ledger: 1, Code: 1}}
	e := EncodeTransfers(ts)
	if e.Len() != 2 {
		t.Fatalf("Len %d; want 2", e.Len())
	}
	ts[0].Amount, ts[1].Amount = 1000, 1000 // reused for the next request before this one is sent
	failures, err := c.CreateEncodedTransfers(context.Background(), e)
	if err != nil || len(failures) != 1 || failures[0].GetIndex() != 1 ||
		failures[0].GetResult() != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_AMOUNT_MUST_NOT_BE_ZERO {
		t.Fatalf("the request as encoded: %v %v; want transfer 1's amount_must_not_be_zero alone", failures, err)
	}
	bad := EncodeTransfers([]*ledgerv1.Transfer{{Id: 3, DebitAccountId: 1, CreditAccountId: 2, Amount: 7, Ledger: 1, Code: 1, BizId: "\xff"}})
	if _, err := c.CreateEncodedTransfers(context.Background(), bad); err == nil {
		t.Fatal("a biz_id that is not UTF-8 was sent")
	}
	accounts, err := c.LookupAccounts(context.Background(), []uint64{2})
	if err != nil || accounts[0].GetCreditsPosted().GetLo() != 5 {
		t.Errorf("account 2: %v %v; want 5 credited (the amount when encoded, and nothing of the refused request)", accounts, err)
	}
}

// TestEncodedRefusedStaysRefused (review): a request proto.Marshal refused when encoded must
// answer that error even if the caller then reuses its messages (as EncodeTransfers' doc
// allows): it must never send what the messages hold at call time.
func TestEncodedRefusedStaysRefused(t *testing.T) {
	c := serve(t, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	})
	openAccounts(t, c, 2)
	ts := []*ledgerv1.Transfer{{Id: 3, DebitAccountId: 1, CreditAccountId: 2, Amount: 7, Ledger: 1, Code: 1, BizId: "\xff"}}
	bad := EncodeTransfers(ts)
	// The caller reuses the message for its next request (a valid one) before sending.
	ts[0].Id, ts[0].Amount, ts[0].BizId = 4, 9, "next"
	if failures, err := c.CreateEncodedTransfers(context.Background(), bad); err == nil {
		t.Fatalf("the refused request was sent with what its messages hold now: failures %v", failures)
	}
	accounts, err := c.LookupAccounts(context.Background(), []uint64{2})
	if err != nil || accounts[0].GetCreditsPosted().GetLo() != 0 {
		t.Errorf("account 2: %v %v; want nothing credited", accounts, err)
	}
}
