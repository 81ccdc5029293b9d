package api

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
	"github.com/ledgercore/ledger/storage/storagetest"
)

type fixture struct {
	client  ledgerv1.LedgerServiceClient
	admin   ledgerv1.AdminServiceClient
	ledger  *actors.Ledger
	store   *storage.Store
	metrics *Metrics
	service *Service
	ctx     context.Context
}

func newFixture(t *testing.T, shards uint32) *fixture {
	t.Helper()
	return newFixtureWith(t, actors.Config{Shards: shards})
}

func newFixtureWith(t *testing.T, cfg actors.Config) *fixture {
	t.Helper()
	return newFixtureOn(t, vfs.NewMem(), cfg)
}

func newFixtureOn(t *testing.T, fs vfs.FS, cfg actors.Config) *fixture {
	t.Helper()
	return newFixtureServing(t, fs, cfg, nil)
}

// newFixtureServing is newFixtureOn with the server options serve gives for the fixture's
// metrics (nil: none).
func newFixtureServing(t *testing.T, fs vfs.FS, cfg actors.Config, serve func(*Metrics) []grpc.ServerOption) *fixture {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: cfg.Shards, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fatal = func(err error) { t.Errorf("fatal: %v", err) }
	l, err := actors.Start(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	svc := NewService(l, m, WithVerifyInterval(0))
	var opts []grpc.ServerOption
	if serve != nil {
		opts = serve(m)
	}
	srv, _ := NewServer(svc, opts...)
	ledgerv1.RegisterAdminServiceServer(srv, svc) // tests serve both on one server
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		l.Stop()
		_ = store.Close()
	})
	return &fixture{client: ledgerv1.NewLedgerServiceClient(conn), admin: ledgerv1.NewAdminServiceClient(conn),
		ledger: l, store: store, metrics: m, service: svc, ctx: context.Background()}
}

func (f *fixture) accounts(t *testing.T, as ...*ledgerv1.Account) {
	t.Helper()
	resp, err := f.client.CreateAccounts(f.ctx, &ledgerv1.CreateAccountsRequest{Accounts: as})
	if err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create accounts: %v %v", resp.GetResults(), err)
	}
}

// transfers sends ts and returns each one's result code name (ok for those not listed).
func (f *fixture) transfers(t *testing.T, ts ...*ledgerv1.Transfer) []string {
	t.Helper()
	resp, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts})
	if err != nil {
		t.Fatalf("create transfers: %v", err)
	}
	out := make([]string, len(ts))
	for i := range out {
		out[i] = "ok"
	}
	for _, r := range resp.GetResults() {
		out[r.GetIndex()] = strings.ToLower(strings.TrimPrefix(r.GetResult().String(), "CREATE_TRANSFER_RESULT_"))
	}
	return out
}

func (f *fixture) balance(t *testing.T, id uint64) *ledgerv1.Account {
	t.Helper()
	resp, err := f.client.LookupAccounts(f.ctx, &ledgerv1.LookupAccountsRequest{Ids: []uint64{id}})
	if err != nil || len(resp.GetAccounts()) != 1 {
		t.Fatalf("lookup %d: %v %v", id, resp, err)
	}
	return resp.GetAccounts()[0]
}

func tr(id, debit, credit, amount uint64) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: id, DebitAccountId: debit, CreditAccountId: credit, Amount: amount, Ledger: 1, Code: 1}
}

// TestHotAccountShowsBuffered: a hot account's lookup shows inflows from another shard as
// credits_buffered until their buffer lands, then as credits_posted, never as both.
func TestHotAccountShowsBuffered(t *testing.T) {
	f := newFixtureWith(t, actors.Config{Shards: 2, HotFlushInterval: time.Hour})
	const hot = 100
	var payer, local uint64
	for id := uint64(1); payer == 0 || local == 0; id++ {
		if ledger.ShardOf(id, 2) != ledger.ShardOf(hot, 2) {
			payer = id
		} else {
			local = id
		}
	}
	f.accounts(t, &ledgerv1.Account{Id: hot, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{Hot: true, Internal: true}},
		&ledgerv1.Account{Id: payer, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: local, Ledger: 1, Code: 1})
	if got := f.transfers(t, tr(1, payer, hot, 70), tr(2, local, hot, 5), tr(3, payer, hot, 30)); got[0] != "ok" || got[1] != "ok" || got[2] != "ok" {
		t.Fatalf("transfers: %v", got)
	}
	a := f.balance(t, hot)
	if small(a.GetCreditsBuffered()) != 100 || small(a.GetCreditsPosted()) != 5 {
		t.Fatalf("before the flush: buffered %v, posted %v; want 100 and 5", a.GetCreditsBuffered(), a.GetCreditsPosted())
	}
	if got := f.balance(t, payer).GetCreditsBuffered(); got != nil {
		t.Fatalf("a plain account shows %v buffered", got)
	}
	if err := f.ledger.Drain(f.ctx); err != nil {
		t.Fatal(err)
	}
	a = f.balance(t, hot)
	if small(a.GetCreditsBuffered()) != 0 || small(a.GetCreditsPosted()) != 105 {
		t.Fatalf("after the flush: buffered %v, posted %v; want 0 and 105", a.GetCreditsBuffered(), a.GetCreditsPosted())
	}
}

// small is a 128-bit total that fits 64 bits (or an impossible value that no test wants).
func small(x *ledgerv1.Uint128) uint64 {
	if v, ok := x.Uint64(); ok {
		return v
	}
	return math.MaxUint64
}

// TestReadsShowOnlyDurableState: while a round's WAL sync has not returned, its transfer is
// visible in Pebble, but no read shows it: a lookup waits until it is durable (a power cut
// before that would erase it).
func TestReadsShowOnlyDurableState(t *testing.T) {
	fs := storagetest.NewStallFS(vfs.NewMem())
	f := newFixtureOn(t, fs, actors.Config{Shards: 1})
	t.Cleanup(fs.Resume) // before the fixture's cleanup, which waits for requests in flight
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1},
		&ledgerv1.Account{Id: 2, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{History: true}})
	fs.Stall()
	done := make(chan []string, 1)
	go func() { done <- f.transfers(t, tr(7, 1, 2, 5)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found, _ := f.store.Live().Transfer(7); found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled round never became visible")
		}
		time.Sleep(time.Millisecond)
	}
	for name, read := range map[string]func(ctx context.Context) (bool, error){
		"transfers": func(ctx context.Context) (bool, error) {
			resp, err := f.client.LookupTransfers(ctx, &ledgerv1.LookupTransfersRequest{Ids: []uint64{7}})
			return len(resp.GetTransfers()) > 0, err
		},
		"accounts": func(ctx context.Context) (bool, error) {
			resp, err := f.client.LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: []uint64{2}})
			return len(resp.GetAccounts()) == 1 && resp.GetAccounts()[0].GetCreditsPosted() != nil, err
		},
		"history": func(ctx context.Context) (bool, error) {
			resp, err := f.client.GetAccountTransfers(ctx, &ledgerv1.GetAccountTransfersRequest{
				Filter: &ledgerv1.AccountFilter{AccountId: 2}})
			return len(resp.GetTransfers()) > 0, err
		},
		"balances": func(ctx context.Context) (bool, error) {
			resp, err := f.client.GetAccountBalances(ctx, &ledgerv1.GetAccountBalancesRequest{
				Filter: &ledgerv1.AccountFilter{AccountId: 2}})
			return len(resp.GetBalances()) > 0, err
		},
	} {
		ctx, cancel := context.WithTimeout(f.ctx, 100*time.Millisecond)
		seen, err := read(ctx)
		cancel()
		if seen {
			t.Errorf("%s: a read showed transfer 7 before it was durable", name)
		} else if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("%s: %v; want it to wait for the sync (DEADLINE_EXCEEDED here)", name, err)
		}
	}
	fs.Resume()
	if got := <-done; got[0] != "ok" {
		t.Fatalf("transfer 7: %v", got)
	}
	resp, err := f.client.LookupTransfers(f.ctx, &ledgerv1.LookupTransfersRequest{Ids: []uint64{7}})
	if err != nil || len(resp.GetTransfers()) != 1 {
		t.Fatalf("after the sync: %v %v", resp, err)
	}
}

// TestResultNamesMatchWire: the domain's result codes and the wire enums agree by number and
// name, so a cast between them is safe.
func TestResultNamesMatchWire(t *testing.T) {
	for n, name := range ledgerv1.CreateTransferResult_name {
		if n == 0 {
			continue
		}
		if got := "CREATE_TRANSFER_RESULT_" + strings.ToUpper(ledger.TransferResult(n).String()); got != name {
			t.Errorf("transfer result %d: domain %s, wire %s", n, got, name)
		}
	}
	for n, name := range ledgerv1.CreateAccountResult_name {
		if n == 0 {
			continue
		}
		if got := "CREATE_ACCOUNT_RESULT_" + strings.ToUpper(ledger.AccountResult(n).String()); got != name {
			t.Errorf("account result %d: domain %s, wire %s", n, got, name)
		}
	}
	for r := 1; r < 256; r++ {
		if name := ledger.TransferResult(r).String(); name != "unknown" {
			if _, ok := ledgerv1.CreateTransferResult_name[int32(r)]; !ok {
				t.Errorf("domain transfer result %d (%s) is not on the wire", r, name)
			}
		}
	}
	states := map[ledger.TransferState]string{ledger.StatePosted: "POSTED", ledger.StatePending: "PENDING",
		ledger.StatePendingPosted: "PENDING_POSTED", ledger.StatePendingVoided: "PENDING_VOIDED",
		ledger.StatePendingExpired: "PENDING_EXPIRED", ledger.StateFailed: "FAILED", ledger.StateInFlight: "IN_FLIGHT"}
	for s, name := range ledgerv1.TransferState_name {
		if s != 0 && "TRANSFER_STATE_"+states[ledger.TransferState(s)] != name {
			t.Errorf("wire state %d %s: domain %s", s, name, states[ledger.TransferState(s)])
		}
	}
	if len(states) != len(ledgerv1.TransferState_name)-1 {
		t.Errorf("%d domain states, %d on the wire", len(states), len(ledgerv1.TransferState_name)-1)
	}
}

// TestBadInput: every kind of bad input gets its clear code, writes nothing, and the server
// keeps serving.
func TestBadInput(t *testing.T) {
	f := newFixture(t, 2)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1},
		&ledgerv1.Account{Id: 3, Ledger: 2, Code: 1}, &ledgerv1.Account{Id: 5, Ledger: 1, Code: 1},
		&ledgerv1.Account{Id: 6, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{DebitsMustNotExceedCredits: true}})
	if got := f.transfers(t, tr(10, 1, 2, math.MaxUint64)); got[0] != "ok" {
		t.Fatalf("funding: %v", got)
	}

	// Malformed as a whole: nothing is run.
	for name, req := range map[string]*ledgerv1.CreateTransfersRequest{
		"empty":     {},
		"too many":  {Transfers: make([]*ledgerv1.Transfer, ledger.BatchEventsMax+1)},
		"too large": {Transfers: []*ledgerv1.Transfer{{Id: 99, BizId: strings.Repeat("x", RequestBytesMax)}}},
	} {
		for i := range req.Transfers {
			if req.Transfers[i] == nil {
				req.Transfers[i] = tr(uint64(100+i), 1, 2, 1)
			}
		}
		_, err := f.client.CreateTransfers(f.ctx, req)
		want := codes.InvalidArgument
		if name == "too large" {
			want = codes.ResourceExhausted
		}
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	if _, err := f.client.CreateAccounts(f.ctx, &ledgerv1.CreateAccountsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty accounts: %v", err)
	}

	// Bad items: each its own code. Those that depend on the ledger's state are stored as
	// failed, with their refusal; the others write nothing.
	got := f.transfers(t,
		tr(20, 1, 2, 0),              // zero amount
		tr(22, 1, 77, 1),             // unknown credit account
		tr(23, 77, 1, 1),             // unknown debit account
		tr(24, 1, 1, 1),              // same account
		tr(10, 1, 2, 5),              // duplicate id, other fields
		tr(10, 1, 2, math.MaxUint64), // duplicate id, same fields
		tr(0, 1, 2, 1),               // zero id
		tr(25, 1, 3, 1),              // other ledger
		tr(26, 6, 2, 1),              // account 6 may not overdraw
	)
	want := []string{"amount_must_not_be_zero", "credit_account_not_found", "debit_account_not_found",
		"accounts_must_be_different", "exists_with_different_fields", "exists", "id_must_not_be_zero",
		"accounts_must_have_the_same_ledger", "exceeds_credits"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d: %s, want %s", i, got[i], want[i])
		}
	}
	resp, err := f.client.LookupTransfers(f.ctx, &ledgerv1.LookupTransfersRequest{Ids: []uint64{20, 22, 23, 24, 25, 26}})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[uint64]ledgerv1.CreateTransferResult{}
	for _, tr := range resp.GetTransfers() {
		if tr.GetState() != ledgerv1.TransferState_TRANSFER_STATE_FAILED {
			t.Errorf("transfer %d: %v", tr.GetId(), tr)
		}
		failed[tr.GetId()] = tr.GetResult()
	}
	if len(failed) != 4 || failed[22] != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_CREDIT_ACCOUNT_NOT_FOUND ||
		failed[26] != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_EXCEEDS_CREDITS {
		t.Errorf("stored refusals: %v", failed)
	}
	// The same requests again: the first answers.
	if got := f.transfers(t, tr(22, 1, 77, 1), tr(26, 6, 2, 1), tr(20, 1, 2, 3)); got[0] != "credit_account_not_found" ||
		got[1] != "exceeds_credits" || got[2] != "ok" {
		t.Errorf("repeated: %v", got)
	}
	// 128-bit totals: past 2^64 there is no overflow (2^64-1 + 3 + 1).
	if got := f.transfers(t, tr(21, 1, 2, 1)); got[0] != "ok" {
		t.Errorf("past 2^64: %v", got)
	}
	if a := f.balance(t, 1); a.GetDebitsPosted().Big().String() != "18446744073709551619" || a.GetCreditsPosted() != nil {
		t.Errorf("account 1: %v", a)
	}
	// Output-only fields are refused, however large their wire value.
	bad := tr(27, 1, 2, 1)
	bad.State = 256
	withResult := tr(28, 1, 2, 1)
	withResult.Result = ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_OK
	if got := f.transfers(t, bad, withResult); got[0] != "timestamp_must_be_zero" || got[1] != "timestamp_must_be_zero" {
		t.Errorf("output-only fields: %v", got)
	}
	ar, err := f.client.CreateAccounts(f.ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 40, Ledger: 1, Code: 1, CreditsBuffered: ledgerv1.U128(0, 1)},
		{Id: 41, Ledger: 1, Code: 1, DebitsPending: ledgerv1.U128(0, 1)}}})
	if err != nil || len(ar.GetResults()) != 2 ||
		ar.GetResults()[0].GetResult() != ledgerv1.CreateAccountResult_CREATE_ACCOUNT_RESULT_BALANCES_MUST_BE_ZERO ||
		ar.GetResults()[1].GetResult() != ledgerv1.CreateAccountResult_CREATE_ACCOUNT_RESULT_BALANCES_MUST_BE_ZERO {
		t.Errorf("accounts with balances: %v %v", ar, err)
	}
	// The payment layer's ids: its transfers and holds, its platform accounts.
	for name, call := range map[string]func() error{
		"transfer id": func() error {
			_, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{tr(1<<63|5, 1, 2, 1)}})
			return err
		},
		"pending id": func() error {
			p := tr(29, 1, 2, 0)
			p.PendingId, p.Flags = 1<<63|5, &ledgerv1.TransferFlags{VoidPending: true}
			_, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{p}})
			return err
		},
		"platform account": func() error {
			_, err := f.client.CreateAccounts(f.ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
				{Id: 1<<62 | 1<<61 | 7, Ledger: 1, Code: 1}}})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "payment layer") {
			t.Errorf("%s of the payment layer: %v", name, err)
		}
	}
	for name, call := range map[string]func() error{
		"accounts": func() error { _, err := f.client.LookupAccounts(f.ctx, &ledgerv1.LookupAccountsRequest{}); return err },
		"transfers": func() error {
			_, err := f.client.LookupTransfers(f.ctx, &ledgerv1.LookupTransfersRequest{})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("lookup %s without ids: %v", name, err)
		}
	}

	// Filters out of range.
	for _, filter := range []*ledgerv1.AccountFilter{nil, {AccountId: 1, Limit: PageResultsMax + 1},
		{AccountId: 1, TimestampMin: 5, TimestampMax: 4}} {
		if _, err := f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{Filter: filter}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("filter %v: %v", filter, err)
		}
	}
	if _, err := f.client.LookupAccounts(f.ctx, &ledgerv1.LookupAccountsRequest{Ids: make([]uint64, LookupIDsMax+1)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("too many ids: %v", err)
	}

	// Still serving, and still consistent.
	f.accounts(t, &ledgerv1.Account{Id: 4, Ledger: 1, Code: 1})
	if got := f.transfers(t, tr(30, 2, 4, 7)); got[0] != "ok" {
		t.Errorf("after bad input: %v", got)
	}
	v, err := f.admin.Verify(f.ctx, &ledgerv1.VerifyRequest{})
	if err != nil || len(v.GetProblems()) > 0 {
		t.Errorf("verify: %v %v", v.GetProblems(), err)
	}
}

// TestHistory: pages of an account's transfers and balances, both directions.
func TestHistory(t *testing.T) {
	f := newFixture(t, 2)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1},
		&ledgerv1.Account{Id: 2, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{History: true}})
	for id := uint64(1); id <= 5; id++ {
		if got := f.transfers(t, tr(id, 1, 2, id*10)); got[0] != "ok" {
			t.Fatal(got)
		}
	}
	page, err := f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 1, Limit: 3}})
	if err != nil || len(page.GetTransfers()) != 3 || page.GetTransfers()[0].GetId() != 1 || page.GetNextTimestamp() == 0 {
		t.Fatalf("first page: %v %v", page, err)
	}
	rest, err := f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 1, Limit: 3, TimestampMin: page.GetNextTimestamp()}})
	if err != nil || len(rest.GetTransfers()) != 2 || rest.GetTransfers()[1].GetId() != 5 || rest.GetNextTimestamp() != 0 {
		t.Fatalf("second page: %v %v", rest, err)
	}
	back, err := f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 1, Reversed: true, Credits: true}})
	if err != nil || len(back.GetTransfers()) != 0 {
		t.Fatalf("credits of a debited account: %v %v", back, err)
	}
	back, err = f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 1, Reversed: true}})
	if err != nil || len(back.GetTransfers()) != 5 || back.GetTransfers()[0].GetId() != 5 {
		t.Fatalf("newest first: %v %v", back, err)
	}
	bal, err := f.client.GetAccountBalances(f.ctx, &ledgerv1.GetAccountBalancesRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 2}})
	if err != nil || len(bal.GetBalances()) != 5 {
		t.Fatalf("balances: %v %v", bal, err)
	}
	var sum uint64
	for i, b := range bal.GetBalances() {
		sum += uint64(i+1) * 10
		if small(b.GetCreditsPosted()) != sum || b.GetTransferId() != uint64(i+1) || !ledger.Day(b.GetDay()).Valid() {
			t.Errorf("balance %d: %v, want credits %d", i, b, sum)
		}
	}
	none, err := f.client.GetAccountBalances(f.ctx, &ledgerv1.GetAccountBalancesRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: 1}})
	if err != nil || len(none.GetBalances()) != 0 {
		t.Errorf("balances of an account without history: %v %v", none, err)
	}
}

func TestErrorCodes(t *testing.T) {
	for err, want := range map[error]codes.Code{
		actors.ErrOverloaded: codes.ResourceExhausted, actors.ErrStopped: codes.Unavailable,
		invalid("x"): codes.InvalidArgument, context.Canceled: codes.Canceled,
	} {
		if got := codeOf(err); got != want {
			t.Errorf("%v: %v, want %v", err, got, want)
		}
	}
}
