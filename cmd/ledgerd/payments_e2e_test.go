package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// The payment end-to-end tests run ledgerd and cmd/fakechannel as real processes: orders of
// every form go through the gRPC API, the channel answers (or not) over HTTP and calls back,
// and the channel's statement is the ground truth the ledger is checked against.

const (
	payLedger   = 1
	payUsers    = 8   // user balances 1..8 (subject 2001)
	merchantID0 = 100 // merchant balances 101..104 (subject 2002)
	payMerchant = 4
	couponAcct  = 201 // the coupon liability account (subject 2004)
	payClients  = 4
	payChannel  = "bank"
)

var (
	final = map[ledgerv1.PaymentState]bool{ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED: true,
		ledgerv1.PaymentState_PAYMENT_STATE_FAILED: true}
	fakeAddrPattern = regexp.MustCompile(`msg="fake channel listening" addr=(\S+)`)
)

// fakeProc is a cmd/fakechannel process.
type fakeProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startFake runs fakechannel with args (and --addr 127.0.0.1:0) and waits until it listens.
func startFake(t *testing.T, bin string, args ...string) *fakeProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fakeProc{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := fakeAddrPattern.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
			if testing.Verbose() && os.Getenv("E2E_FAKE_LOG") != "" {
				fmt.Fprintln(os.Stderr, "fakechannel:", sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(f.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-f.done })
	select {
	case f.addr = <-found:
	case <-f.done:
		t.Fatal("fakechannel exited before listening")
	case <-time.After(20 * time.Second):
		t.Fatal("fakechannel did not start listening")
	}
	return f
}

func (f *fakeProc) url() string { return "http://" + f.addr }

// txnLine is a line of the channel's statement.
type txnLine struct {
	txn, op, orderNo, original, status string
	amount                             uint64
}

// statement has the fake channel write the statements of the days the test ran through and
// returns their txns by order_no.
func (f *fakeProc) statement(t *testing.T, since time.Time) map[string][]txnLine {
	t.Helper()
	var dates []string
	for d := since.UTC(); ; d = d.Add(24 * time.Hour) {
		dates = append(dates, d.Format(time.DateOnly))
		if d.Format(time.DateOnly) >= time.Now().UTC().Format(time.DateOnly) {
			break
		}
	}
	out := map[string][]txnLine{}
	for _, date := range dates {
		resp, err := http.Post(f.url()+"/v1/statements/"+date, "application/json", nil)
		if err != nil {
			t.Fatalf("statement %s: %v", date, err)
		}
		var ans struct {
			Path  string `json:"path"`
			Lines int    `json:"lines"`
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("statement %s: HTTP %d %v %s", date, resp.StatusCode, err, ans.Error)
		}
		file, err := os.Open(ans.Path)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(file).ReadAll()
		file.Close()
		if err != nil || len(recs) != ans.Lines+1 {
			t.Fatalf("statement %s: %d records, %d lines said: %v", date, len(recs), ans.Lines, err)
		}
		for _, r := range recs[1:] {
			amount, err := strconv.ParseUint(r[6], 10, 64)
			if err != nil {
				t.Fatalf("statement line %q: %v", r, err)
			}
			l := txnLine{txn: r[1], op: r[2], orderNo: r[3], original: r[4], status: r[5], amount: amount}
			out[l.orderNo] = append(out[l.orderNo], l)
		}
	}
	return out
}

// payEnv is one test's processes and clients.
type payEnv struct {
	t         *testing.T
	ledgerd   string
	dataDir   string
	flags     []string
	srv       *server
	fake      *fakeProc
	conn      *grpc.ClientConn
	pay       ledgerv1.PaymentServiceClient
	led       ledgerv1.LedgerServiceClient
	admin     ledgerv1.AdminServiceClient
	setup     *payment.Setup
	started   time.Time
	stuckOK   bool // SIGKILL: a payout or refund the channel never got may stay unknown
	restarted atomic.Bool
}

// faultyFake is the channel of the end-to-end tests: failures, lost answers, duplicate
// callbacks and payments, amount mismatches.
var faultyFake = []string{"--seed", "42", "--latency", "2ms", "--fail-rate", "0.2", "--timeout-rate", "0.1",
	"--timeout-hold", "300ms", "--dup-callback-rate", "0.2", "--dup-pay-rate", "0.05", "--mismatch-rate", "0.05",
	"--callback-delay", "20ms", "--callback-backoff", "100ms", "--callback-attempts", "10"}

// newPayEnv builds the binaries, starts fakechannel with fakeArgs and ledgerd with extra
// flags, and dials ledgerd.
func newPayEnv(t *testing.T, fakeArgs []string, extra ...string) *payEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	e := &payEnv{t: t, ledgerd: build(t, dir, "./cmd/ledgerd"), dataDir: filepath.Join(dir, "data"), started: time.Now()}
	fakeBin := build(t, dir, "./cmd/fakechannel")
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("e2e-secret-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stmts := filepath.Join(dir, "statements")
	if err := os.Mkdir(stmts, 0o700); err != nil {
		t.Fatal(err)
	}
	e.fake = startFake(t, fakeBin, append([]string{"--secret-file", secret, "--statement-dir", stmts}, fakeArgs...)...)
	e.flags = append([]string{"--channel", payChannel + "=" + e.fake.url(), "--channel-secret", payChannel + "=" + secret,
		"--channel-timeout", "200ms"}, extra...)
	e.srv = start(t, e.ledgerd, e.dataDir, e.flags...)
	t.Cleanup(func() { e.stop() })
	conn, err := grpc.NewClient(e.srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.conn = conn
	e.pay = ledgerv1.NewPaymentServiceClient(conn)
	e.led = ledgerv1.NewLedgerServiceClient(conn)
	adminConn, err := grpc.NewClient(e.srv.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adminConn.Close() })
	e.admin = ledgerv1.NewAdminServiceClient(adminConn)
	if e.setup, err = payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{payChannel}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *payEnv) stop() {
	if e.srv == nil {
		return
	}
	_ = e.srv.cmd.Process.Kill()
	select {
	case <-e.srv.exited:
	case <-time.After(10 * time.Second):
	}
	e.srv = nil
}

// kill SIGKILLs ledgerd and starts it again on the same data dir with the same flags.
func (e *payEnv) kill() {
	e.t.Helper()
	if err := e.srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		e.t.Error(err)
		return
	}
	<-e.srv.exited
	e.srv = start(e.t, e.ledgerd, e.dataDir, e.flags...)
	e.restarted.Store(true)
}

func (e *payEnv) openAccounts(ctx context.Context) {
	e.t.Helper()
	var as []*ledgerv1.Account
	for u := uint64(1); u <= payUsers; u++ {
		as = append(as, &ledgerv1.Account{Id: u, Ledger: payLedger, Code: 2001,
			Flags: &ledgerv1.AccountFlags{DebitsMustNotExceedCredits: true}})
	}
	for m := uint64(1); m <= payMerchant; m++ {
		as = append(as, &ledgerv1.Account{Id: merchantID0 + m, Ledger: payLedger, Code: 2002})
	}
	as = append(as, &ledgerv1.Account{Id: couponAcct, Ledger: payLedger, Code: 2004})
	resp, err := e.led.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: as})
	if err != nil || len(resp.GetResults()) > 0 {
		e.t.Fatalf("create accounts: %v %v", resp.GetResults(), err)
	}
}

// workload sends payment requests and remembers the orders they made, by key.
type workload struct {
	e       *payEnv
	mu      sync.Mutex
	orders  map[string]uint64 // idempotency key -> order id
	reqs    map[string]*ledgerv1.PaymentRequest
	created atomic.Int64
	retried atomic.Int64 // calls sent again after an error
	exists  atomic.Int64 // EXISTS answers to a call sent again
	onCount func(n int64)
}

func newWorkload(e *payEnv) *workload {
	return &workload{e: e, orders: map[string]uint64{}, reqs: map[string]*ledgerv1.PaymentRequest{}}
}

// create sends reqs until they are answered (the same keys again after UNAVAILABLE or a lost
// answer) and returns the ids of the orders made, in request order (0 where none).
func (w *workload) create(ctx context.Context, reqs []*ledgerv1.PaymentRequest) []uint64 {
	t := w.e.t
	deadline := time.Now().Add(45 * time.Second)
	ids := make([]uint64, len(reqs))
	pending := slices.Clone(reqs)
	again := false
	for len(pending) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := w.e.pay.CreatePayments(cctx, &ledgerv1.CreatePaymentsRequest{Requests: pending})
		cancel()
		if err != nil {
			switch status.Code(err) {
			case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
				if time.Now().Before(deadline) {
					w.retried.Add(1)
					again = true
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			t.Errorf("create payments: %v", err)
			return ids
		}
		var left []*ledgerv1.PaymentRequest
		for _, r := range resp.GetResults() {
			req := pending[r.GetIndex()]
			switch r.GetResult() {
			case ledgerv1.PaymentResult_PAYMENT_RESULT_OK, ledgerv1.PaymentResult_PAYMENT_RESULT_EXISTS:
				if r.GetResult() == ledgerv1.PaymentResult_PAYMENT_RESULT_EXISTS {
					if !again {
						t.Errorf("key %s: EXISTS for a request sent once", req.GetIdempotencyKey())
					}
					w.exists.Add(1)
				}
				o := r.GetOrder()
				if o.GetId() == 0 || o.GetIdempotencyKey() != req.GetIdempotencyKey() || o.GetAmount() != req.GetAmount() {
					t.Errorf("key %s: answered order %v", req.GetIdempotencyKey(), o)
					continue
				}
				w.mu.Lock()
				if prev, ok := w.orders[req.GetIdempotencyKey()]; ok && prev != o.GetId() {
					t.Errorf("key %s: order %d, then %d", req.GetIdempotencyKey(), prev, o.GetId())
				}
				w.orders[req.GetIdempotencyKey()] = o.GetId()
				w.reqs[req.GetIdempotencyKey()] = req
				w.mu.Unlock()
				ids[slices.Index(reqs, req)] = o.GetId()
				if n := w.created.Add(1); w.onCount != nil {
					w.onCount(n)
				}
			case ledgerv1.PaymentResult_PAYMENT_RESULT_OVERLOADED:
				left = append(left, req)
			default:
				t.Errorf("key %s: %v", req.GetIdempotencyKey(), r.GetResult())
			}
		}
		pending = left
		if len(left) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ids
}

func (w *workload) ids() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for _, id := range w.orders {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// parallel runs fn for each client, each with its own seeded generator.
func parallel(fn func(c int, rng *rand.Rand)) {
	var wg sync.WaitGroup
	for c := range payClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(c, rand.New(rand.NewPCG(uint64(c)+1, 2024)))
		}()
	}
	wg.Wait()
}

func card(amount uint64) *ledgerv1.Instrument {
	return &ledgerv1.Instrument{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD, Amount: amount}
}

// pace spaces a client's calls. The gateway's circuit opens after 5 failed calls in a row
// (gateway.DefaultBreakerFailures), and answers the channel holds back all time out together
// 200ms after they were sent: sent in one burst, 5 of them among a hundred calls would open
// the circuit for 30 s. Spaced, the successes of the calls sent in between come between them.
const pace = 20 * time.Millisecond

// run sends the workload: recharges fund the users; then combined payments (coupon, balance
// and card; card only; coupon and balance), withdrawals and transfers; then refunds of
// succeeded payments, in full or in two parts. Each phase waits for its orders to settle.
func (w *workload) run(ctx context.Context) {
	e := w.e
	parallel(func(c int, rng *rand.Rand) {
		var reqs []*ledgerv1.PaymentRequest
		for i := range 10 {
			user := uint64(c*2 + i%2 + 1)
			reqs = append(reqs, &ledgerv1.PaymentRequest{IdempotencyKey: fmt.Sprintf("recharge-%d-%d", c, i),
				BizId: fmt.Sprintf("top-up-%d-%d", c, i), Form: ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE,
				Ledger: payLedger, Amount: 20_000 + rng.Uint64N(20_000), ToAccountId: user, Channel: payChannel,
				ChannelAccount: fmt.Sprintf("card-%d", user)})
		}
		w.create(ctx, reqs[:5])
		time.Sleep(pace)
		w.create(ctx, reqs[5:])
	})
	e.settle(ctx, w.ids(), 25*time.Second)

	parallel(func(c int, rng *rand.Rand) {
		for b := range 12 {
			var reqs []*ledgerv1.PaymentRequest
			for i := range 5 {
				n := b*5 + i
				user := rng.Uint64N(payUsers) + 1
				key := fmt.Sprintf("c%d-%d", c, n)
				r := &ledgerv1.PaymentRequest{IdempotencyKey: key, BizId: "biz-" + key, Ledger: payLedger}
				switch k := rng.IntN(10); {
				case k < 6: // a combined payment
					r.Form, r.FromAccountId = ledgerv1.PaymentForm_PAYMENT_FORM_PAY, user
					r.ToAccountId = merchantID0 + rng.Uint64N(payMerchant) + 1
					switch rng.IntN(5) {
					case 0, 1: // coupon + balance + card
						r.Instruments = []*ledgerv1.Instrument{
							{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_COUPON, Amount: 100 + rng.Uint64N(400), AccountId: couponAcct},
							{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_BALANCE, Amount: 100 + rng.Uint64N(900)},
							card(500 + rng.Uint64N(2500))}
					case 2, 3: // card only
						r.Instruments = []*ledgerv1.Instrument{card(500 + rng.Uint64N(2500))}
					default: // coupon + balance, no channel
						r.Instruments = []*ledgerv1.Instrument{
							{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_COUPON, Amount: 100 + rng.Uint64N(400), AccountId: couponAcct},
							{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_BALANCE, Amount: 100 + rng.Uint64N(900), AccountId: user}}
					}
					for _, in := range r.Instruments {
						r.Amount += in.GetAmount()
					}
					if last := r.Instruments[len(r.Instruments)-1]; last.GetKind() == ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD {
						r.Channel, r.ChannelAccount = payChannel, fmt.Sprintf("card-%d", user)
					}
				case k < 8:
					r.Form, r.FromAccountId, r.Amount = ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW, user, 500+rng.Uint64N(3000)
					r.Channel, r.ChannelAccount = payChannel, fmt.Sprintf("iban-%d", user)
				default:
					to := (user+rng.Uint64N(payUsers-1))%payUsers + 1
					r.Form, r.FromAccountId, r.ToAccountId = ledgerv1.PaymentForm_PAYMENT_FORM_TRANSFER, user, to
					r.Amount = 100 + rng.Uint64N(2000)
				}
				reqs = append(reqs, r)
			}
			w.create(ctx, reqs)
			time.Sleep(pace)
		}
	})
	orders := e.settle(ctx, w.ids(), 30*time.Second)

	var paid []*ledgerv1.PaymentOrder
	for _, id := range w.ids() {
		if o := orders[id]; o.GetForm() == ledgerv1.PaymentForm_PAYMENT_FORM_PAY &&
			o.GetState() == ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
			paid = append(paid, o)
		}
	}
	parallel(func(c int, rng *rand.Rand) {
		var reqs []*ledgerv1.PaymentRequest
		for i := c; i < len(paid); i += payClients {
			o := paid[i]
			refund := func(part int, amount uint64) {
				reqs = append(reqs, &ledgerv1.PaymentRequest{IdempotencyKey: fmt.Sprintf("refund-%d-%d", o.GetId(), part),
					BizId: o.GetBizId(), Form: ledgerv1.PaymentForm_PAYMENT_FORM_REFUND, Amount: amount,
					OriginalOrderId: o.GetId()})
			}
			switch rng.IntN(5) {
			case 0: // in full
				refund(0, o.GetAmount())
			case 1: // in two parts
				half := o.GetAmount() / 2
				refund(0, half)
				refund(1, o.GetAmount()-half)
			case 2: // a part
				refund(0, 1+rng.Uint64N(o.GetAmount()))
			}
		}
		for len(reqs) > 0 {
			n := min(len(reqs), 5)
			w.create(ctx, reqs[:n])
			reqs = reqs[n:]
			time.Sleep(pace)
		}
	})
}

// orders reads orders by id.
func (e *payEnv) orders(ctx context.Context, ids []uint64) map[uint64]*ledgerv1.PaymentOrder {
	out := map[uint64]*ledgerv1.PaymentOrder{}
	for i := 0; i < len(ids); i += 8000 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := e.pay.GetOrders(cctx, &ledgerv1.GetOrdersRequest{Ids: ids[i:min(i+8000, len(ids))]})
		cancel()
		if err != nil {
			e.t.Fatalf("get orders: %v", err)
		}
		for _, o := range resp.GetOrders() {
			out[o.GetId()] = o
		}
	}
	return out
}

// busyException reports whether an exception record is between steps (booking, refunding,
// unbooking): it waits for the ledger or the channel.
func busyException(x *ledgerv1.PaymentException) bool {
	s := x.GetState()
	return s != ledgerv1.ExceptionState_EXCEPTION_STATE_OPEN && s != ledgerv1.ExceptionState_EXCEPTION_STATE_RESOLVED
}

// settle waits until every order is final and none of their exception records waits, or
// until timeout, and returns the orders as they stand. After a SIGKILL (stuckOK) it also
// stops waiting for an order or exception refund the channel holds no txn of (the request
// was recorded as sent, but the process died before it went out: it is queried for the
// not-found window of 10 minutes before it fails).
func (e *payEnv) settle(ctx context.Context, ids []uint64, timeout time.Duration) map[uint64]*ledgerv1.PaymentOrder {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		orders := e.orders(ctx, ids)
		var waiting []*ledgerv1.PaymentOrder
		for _, o := range orders {
			if !final[o.GetState()] || slices.ContainsFunc(o.GetExceptions(), busyException) {
				waiting = append(waiting, o)
			}
		}
		if len(waiting) == 0 {
			e.t.Logf("%d orders settled in %v", len(ids), time.Since(start).Round(time.Millisecond))
			return orders
		}
		if e.stuckOK && e.restarted.Load() && time.Since(start) > 3*time.Second {
			stmt := e.fake.statement(e.t, e.started)
			if !slices.ContainsFunc(waiting, func(o *ledgerv1.PaymentOrder) bool { return !neverSent(o, stmt) }) {
				e.t.Logf("%d orders settled in %v but for %d whose requests never reached the channel", len(ids),
					time.Since(start).Round(time.Millisecond), len(waiting))
				return orders
			}
		}
		if time.Now().After(deadline) {
			e.t.Logf("settling: %d of %d orders still wait after %v, e.g. %v", len(waiting), len(ids), timeout, waiting[0])
			return orders
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// neverSent reports whether o waits only for channel requests the channel has no txn of: a
// payout or refund order in PROCESSING or UNKNOWN, or exception refunds.
func neverSent(o *ledgerv1.PaymentOrder, stmt map[string][]txnLine) bool {
	if !final[o.GetState()] {
		f := o.GetForm()
		if f != ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW && f != ledgerv1.PaymentForm_PAYMENT_FORM_REFUND ||
			len(stmt[o.GetChannelOrderNo()]) > 0 {
			return false
		}
		if s := o.GetState(); s != ledgerv1.PaymentState_PAYMENT_STATE_PROCESSING && s != ledgerv1.PaymentState_PAYMENT_STATE_UNKNOWN {
			return false
		}
	}
	for _, x := range o.GetExceptions() {
		if busyException(x) && (x.GetState() != ledgerv1.ExceptionState_EXCEPTION_STATE_REFUNDING ||
			len(attemptLines(stmt, o.GetId(), int(x.GetIndex()))) > 0) {
			return false
		}
	}
	return true
}

// attemptLines are the statement's lines of every refund attempt of exception k of an order
// (each attempt has an order number of its own).
func attemptLines(stmt map[string][]txnLine, id uint64, k int) []txnLine {
	var lines []txnLine
	for n := uint32(1); n <= 8; n++ {
		lines = append(lines, stmt[payment.ExceptionNo(id, k, n)]...)
	}
	return lines
}

// exceptions lists every exception record, resolved too, by order.
func (e *payEnv) exceptions(ctx context.Context) map[uint64][]*ledgerv1.PaymentException {
	out := map[uint64][]*ledgerv1.PaymentException{}
	after := uint64(0)
	for {
		resp, err := e.pay.ListExceptions(ctx, &ledgerv1.ListExceptionsRequest{IncludeResolved: true, AfterOrderId: after, Limit: 1000})
		if err != nil {
			e.t.Fatalf("list exceptions: %v", err)
		}
		for _, x := range resp.GetExceptions() {
			out[x.GetOrderId()] = append(out[x.GetOrderId()], x)
		}
		if after = resp.GetNextAfterOrderId(); after == 0 {
			return out
		}
	}
}

func net128(a *ledgerv1.Account) int64 {
	if a.GetCreditsPosted().GetHi() != 0 || a.GetDebitsPosted().GetHi() != 0 {
		return 1 << 62 // never expected
	}
	return int64(a.GetCreditsPosted().GetLo()) - int64(a.GetDebitsPosted().GetLo())
}

// check asserts the guarantees on the settled orders of w against the channel's statement and
// the ledger's balances.
func (e *payEnv) check(ctx context.Context, w *workload) {
	t := e.t
	ids := w.ids()
	orders := e.settle(ctx, ids, 30*time.Second)
	if len(orders) != len(ids) {
		t.Fatalf("%d orders acknowledged, %d found", len(ids), len(orders))
	}
	w.mu.Lock()
	for key, id := range w.orders {
		if o := orders[id]; o.GetIdempotencyKey() != key || o.GetAmount() != w.reqs[key].GetAmount() {
			t.Errorf("key %s: order %v", key, o)
		}
	}
	w.mu.Unlock()
	stmt := e.fake.statement(t, e.started)

	// Every order is final (after a SIGKILL, but for requests that never reached the channel).
	states := map[string]int{}
	stuck := 0
	for _, o := range orders {
		states[o.GetForm().String()+"/"+o.GetState().String()+"/"+o.GetResult().String()]++
		if !final[o.GetState()] || slices.ContainsFunc(o.GetExceptions(), busyException) {
			if e.stuckOK && neverSent(o, stmt) {
				stuck++
				continue
			}
			t.Errorf("order %d did not settle: %v", o.GetId(), o)
		}
	}
	t.Logf("orders by form/state/result: %v", states)

	// No payout or refund went twice; every order agrees with the channel's txns.
	for no, lines := range stmt {
		if lines[0].op != "pay" && len(lines) > 1 {
			t.Errorf("the channel has %d txns of %s %s: %v", len(lines), lines[0].op, no, lines)
		}
	}
	exc := e.exceptions(ctx)
	for _, o := range orders {
		if got, want := len(exc[o.GetId()]), len(o.GetExceptions()); got != want {
			t.Errorf("order %d has %d exceptions, ListExceptions %d", o.GetId(), want, got)
		}
	}
	dupWant, mismatchWant := map[uint64]bool{}, map[uint64]bool{}
	for _, o := range orders {
		lines := stmt[o.GetChannelOrderNo()]
		var ok []txnLine
		for _, l := range lines {
			if l.status == "succeeded" {
				ok = append(ok, l)
			}
		}
		var cardAmount uint64
		if ins := o.GetInstruments(); len(ins) > 0 && ins[len(ins)-1].GetKind() == ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD {
			cardAmount = ins[len(ins)-1].GetAmount()
		} else if o.GetForm() == ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW {
			cardAmount = o.GetAmount()
		}
		succeeded := o.GetState() == ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED
		switch o.GetForm() {
		case ledgerv1.PaymentForm_PAYMENT_FORM_TRANSFER:
			if len(lines) > 0 {
				t.Errorf("transfer %d reached the channel: %v", o.GetId(), lines)
			}
		case ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW, ledgerv1.PaymentForm_PAYMENT_FORM_REFUND:
			if cardAmount == 0 {
				if len(lines) > 0 || !final[o.GetState()] {
					t.Errorf("order %d has no channel part, but txns %v, state %v", o.GetId(), lines, o.GetState())
				}
				break
			}
			if final[o.GetState()] && succeeded != (len(ok) == 1) {
				t.Errorf("order %d is %v, the channel has %v", o.GetId(), o.GetState(), lines)
			}
			if succeeded && (ok[0].amount != cardAmount || ok[0].txn != o.GetChannelTxn()) {
				t.Errorf("order %d: %d by txn %s, the channel has %v", o.GetId(), cardAmount, o.GetChannelTxn(), ok)
			}
		default: // recharge, pay: the channel collects
			if cardAmount == 0 {
				if len(lines) > 0 {
					t.Errorf("pay %d without a card reached the channel: %v", o.GetId(), lines)
				}
				break
			}
			if len(ok) == 2 {
				dupWant[o.GetId()] = true
			} else if len(ok) > 2 {
				t.Errorf("order %d was collected %d times", o.GetId(), len(ok))
			}
			if len(ok) > 0 && ok[0].amount != cardAmount {
				mismatchWant[o.GetId()] = true
			}
			paid := len(ok) > 0 && ok[0].amount == cardAmount
			if succeeded != paid {
				t.Errorf("order %d is %v (%v), the channel has %v for %d", o.GetId(), o.GetState(), o.GetResult(), lines, cardAmount)
			}
			if len(ok) > 0 && !slices.ContainsFunc(ok, func(l txnLine) bool { return l.txn == o.GetChannelTxn() }) {
				t.Errorf("order %d was decided by txn %q, the channel has %v", o.GetId(), o.GetChannelTxn(), ok)
			}
		}
	}

	// Duplicates and mismatches made exactly the right exception records. A second payment's
	// callback may still be on its way (the channel retries it): wait for it, bounded.
	var dupGot, mismatchGot map[uint64]bool
	for deadline := time.Now().Add(15 * time.Second); ; {
		dupGot, mismatchGot = map[uint64]bool{}, map[uint64]bool{}
		for id, xs := range exc {
			for _, x := range xs {
				switch x.GetKind() {
				case ledgerv1.ExceptionKind_EXCEPTION_KIND_DUPLICATE_PAYMENT:
					if dupGot[id] {
						t.Errorf("order %d has two duplicate_payment records: %v", id, xs)
					}
					dupGot[id] = true
				case ledgerv1.ExceptionKind_EXCEPTION_KIND_AMOUNT_MISMATCH:
					if mismatchGot[id] {
						t.Errorf("order %d has two amount_mismatch records: %v", id, xs)
					}
					mismatchGot[id] = true
				}
			}
		}
		if sameKeys(dupGot, dupWant) && sameKeys(mismatchGot, mismatchWant) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
		exc = e.exceptions(ctx)
		orders = e.settle(ctx, ids, 10*time.Second)
	}
	if !sameKeys(dupGot, dupWant) {
		t.Errorf("duplicate_payment records on orders %v; the channel collected twice for %v", keys(dupGot), keys(dupWant))
	}
	if !sameKeys(mismatchGot, mismatchWant) {
		t.Errorf("amount_mismatch records on orders %v; the channel collected another amount for %v", keys(mismatchGot), keys(mismatchWant))
	}
	t.Logf("%d duplicate payments, %d amount mismatches, %d orders left waiting for requests that never went out",
		len(dupWant), len(mismatchWant), stuck)

	// Exceptions: what each holds in suspense, and what the channel refunded.
	var suspense, bookedIn, bookedOut int64
	refunded, open := 0, 0
	for id, xs := range exc {
		o := orders[id]
		for _, x := range xs {
			k := x.GetKind()
			if k != ledgerv1.ExceptionKind_EXCEPTION_KIND_DUPLICATE_PAYMENT && k != ledgerv1.ExceptionKind_EXCEPTION_KIND_AMOUNT_MISMATCH {
				t.Errorf("order %d: unexpected exception %v", id, x)
				continue
			}
			lines := attemptLines(stmt, id, int(x.GetIndex()))
			back := slices.ContainsFunc(lines, func(l txnLine) bool { return l.status == "succeeded" })
			resolved := x.GetState() == ledgerv1.ExceptionState_EXCEPTION_STATE_RESOLVED
			bookedIn += int64(x.GetAmount())
			switch {
			case resolved:
				refunded++
				bookedOut += int64(x.GetAmount())
				if !back || k != ledgerv1.ExceptionKind_EXCEPTION_KIND_DUPLICATE_PAYMENT {
					t.Errorf("order %d: exception %v resolved, the channel has %v", id, x, lines)
				}
			default:
				open++
				suspense += int64(x.GetAmount())
				t.Logf("open: order %d %v %d: %s; the channel has %v", id, k, x.GetAmount(), x.GetNote(), lines)
				if back {
					t.Errorf("order %d: exception %v holds money the channel refunded: %v", id, x, lines)
				}
				if k == ledgerv1.ExceptionKind_EXCEPTION_KIND_DUPLICATE_PAYMENT && x.GetState() == ledgerv1.ExceptionState_EXCEPTION_STATE_OPEN &&
					!slices.ContainsFunc(lines, func(l txnLine) bool { return l.status == "failed" }) &&
					!strings.Contains(x.GetNote(), "not called") {
					t.Errorf("order %d: duplicate payment %v open, but its refund neither failed nor was refused: %v", id, x, lines)
				}
			}
			// The record's txn is one of the channel's for its order, with its amount.
			if !slices.ContainsFunc(stmt[o.GetChannelOrderNo()], func(l txnLine) bool {
				return l.txn == x.GetTxn() && l.amount == x.GetAmount() && l.status == "succeeded"
			}) {
				t.Errorf("order %d: exception %v names no txn of the channel's: %v", id, x, stmt[o.GetChannelOrderNo()])
			}
		}
	}
	t.Logf("exceptions: %d refunded and resolved, %d holding %d in suspense", refunded, open, suspense)

	// Balances: what the succeeded orders moved.
	want := map[uint64]int64{}
	receivable := e.setup.PlatformAccount(payLedger, 1122, payChannel)
	transit := e.setup.PlatformAccount(payLedger, 2003, "")
	suspenseID := e.setup.PlatformAccount(payLedger, 2005, "")
	want[transit] = 0
	want[suspenseID] = suspense
	want[receivable] = -(bookedIn - bookedOut) // an asset: debits are positive; net is credits - debits
	for _, o := range orders {
		if o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
			continue
		}
		amt := int64(o.GetAmount())
		switch o.GetForm() {
		case ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE:
			want[o.GetToAccountId()] += amt
			want[receivable] -= amt
		case ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW:
			want[o.GetFromAccountId()] -= amt
			want[receivable] += amt
		case ledgerv1.PaymentForm_PAYMENT_FORM_TRANSFER:
			want[o.GetFromAccountId()] -= amt
			want[o.GetToAccountId()] += amt
		case ledgerv1.PaymentForm_PAYMENT_FORM_PAY:
			want[o.GetToAccountId()] += amt
			for _, in := range o.GetInstruments() {
				if in.GetKind() == ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD {
					want[receivable] -= int64(in.GetAmount())
				} else {
					want[in.GetAccountId()] -= int64(in.GetAmount())
				}
			}
		case ledgerv1.PaymentForm_PAYMENT_FORM_REFUND:
			want[o.GetFromAccountId()] -= amt
			var sum int64
			for _, in := range o.GetInstruments() {
				sum += int64(in.GetAmount())
				if in.GetKind() == ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD {
					want[receivable] += int64(in.GetAmount())
				} else if in.GetAmount() > 0 {
					want[in.GetAccountId()] += int64(in.GetAmount())
				}
			}
			if sum != amt {
				t.Errorf("refund %d of %d has parts %v", o.GetId(), amt, o.GetInstruments())
			}
		}
	}
	accounts := []uint64{transit, suspenseID, receivable, couponAcct}
	for u := uint64(1); u <= payUsers; u++ {
		accounts = append(accounts, u)
	}
	for m := uint64(1); m <= payMerchant; m++ {
		accounts = append(accounts, merchantID0+m)
	}
	var mismatch []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := e.led.LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: accounts})
		if err != nil || len(resp.GetAccounts()) != len(accounts) {
			t.Fatalf("lookup accounts: %d of %d, %v", len(resp.GetAccounts()), len(accounts), err)
		}
		mismatch = nil
		for _, a := range resp.GetAccounts() {
			if got := net128(a); got != want[a.GetId()] || a.GetCreditsBuffered().GetLo() != 0 {
				mismatch = append(mismatch, fmt.Sprintf("account %d: credits-debits posted %d (buffered %d), the orders say %d",
					a.GetId(), got, a.GetCreditsBuffered().GetLo(), want[a.GetId()]))
			}
			if stuck == 0 && (a.GetDebitsPending().GetLo() != 0 || a.GetCreditsPending().GetLo() != 0) {
				mismatch = append(mismatch, fmt.Sprintf("account %d: holds left with every order final: %v %v",
					a.GetId(), a.GetDebitsPending(), a.GetCreditsPending()))
			}
		}
		if len(mismatch) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range mismatch {
		t.Error(m)
	}

	v, err := e.admin.Verify(ctx, &ledgerv1.VerifyRequest{})
	if err != nil || len(v.GetProblems()) > 0 {
		t.Errorf("verify: %v %v", v.GetProblems(), err)
	}
}

func sameKeys(a, b map[uint64]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[uint64]bool) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPaymentsEndToEnd runs a few hundred orders of every form through ledgerd and a faulty
// fakechannel process (declines, lost answers, duplicate callbacks and payments, amount
// mismatches) and checks, once they settled, that every order is final, that the channel's
// statement agrees with every order (no payout or refund twice; duplicates and mismatches
// exactly where the exception records say), and that the ledger's balances are what the
// succeeded orders and the exceptions moved.
func TestPaymentsEndToEnd(t *testing.T) {
	e := newPayEnv(t, faultyFake)
	ctx := context.Background()
	e.openAccounts(ctx)
	w := newWorkload(e)
	w.run(ctx)
	e.check(ctx, w)
	t.Logf("%d orders", len(w.ids()))
}

// TestPaymentsSurviveSIGKILL is TestPaymentsEndToEnd with ledgerd killed by SIGKILL while
// payments are in flight and restarted on its data dir: calls that failed are sent again with
// their keys (and answer the same orders), and the same guarantees hold once orders settle.
func TestPaymentsSurviveSIGKILL(t *testing.T) {
	// Fixed ports, so that the client reconnects and the channel's callbacks reach the
	// restarted process.
	e := newPayEnv(t, faultyFake, "--listen", freePort(t), "--admin-listen", freePort(t), "--notify-listen", freePort(t))
	e.stuckOK = true
	ctx := context.Background()
	e.openAccounts(ctx)
	w := newWorkload(e)
	var once sync.Once
	killed := make(chan struct{})
	w.onCount = func(n int64) {
		if n == 40+100 { // in the middle of the payments, withdrawals and transfers
			once.Do(func() {
				go func() {
					defer close(killed)
					time.Sleep(5 * time.Millisecond)
					inFlight := 0
					for _, o := range e.orders(ctx, w.ids()) {
						if !final[o.GetState()] {
							inFlight++
						}
					}
					e.kill()
					t.Logf("killed with %d orders acknowledged, %d of them not final a moment before", len(w.ids()), inFlight)
				}()
			})
		}
	}
	w.run(ctx)
	<-killed
	e.check(ctx, w)
	t.Logf("%d orders; %d calls sent again after the kill, %d answered EXISTS", len(w.ids()), w.retried.Load(), w.exists.Load())
	if !e.restarted.Load() {
		t.Fatal("ledgerd was not killed")
	}
}

// waitOrder polls an order until it is final or timeout passes.
func (e *payEnv) waitOrder(ctx context.Context, id uint64, timeout time.Duration) *ledgerv1.PaymentOrder {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := e.orders(ctx, []uint64{id})[id]
		if final[o.GetState()] || time.Now().After(deadline) {
			return o
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *payEnv) recharge(ctx context.Context, w *workload, key string, user, amount uint64) uint64 {
	e.t.Helper()
	ids := w.create(ctx, []*ledgerv1.PaymentRequest{{IdempotencyKey: key, Form: ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE,
		Ledger: payLedger, Amount: amount, ToAccountId: user, Channel: payChannel, ChannelAccount: "card"}})
	if ids[0] == 0 {
		e.t.Fatalf("recharge %s not accepted", key)
	}
	return ids[0]
}

// expectFailedFast sends a recharge and expects it to fail with CHANNEL_UNAVAILABLE at once.
func (e *payEnv) expectFailedFast(ctx context.Context, w *workload, key string) {
	e.t.Helper()
	begin := time.Now()
	id := e.recharge(ctx, w, key, 1, 100)
	o := e.waitOrder(ctx, id, 10*time.Second)
	took := time.Since(begin)
	if o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_FAILED ||
		o.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_CHANNEL_UNAVAILABLE {
		e.t.Fatalf("recharge %s: %v %v, want FAILED CHANNEL_UNAVAILABLE", key, o.GetState(), o.GetResult())
	}
	// Fast: no channel timeout (200ms) nor query (1s) is waited for; generous for a loaded
	// machine.
	if took > 3*time.Second {
		e.t.Errorf("recharge %s failed after %v, want at once", key, took)
	}
	e.t.Logf("recharge %s failed with CHANNEL_UNAVAILABLE after %v", key, took.Round(time.Millisecond))
}

// internalWorks checks that the ledger and internal payments go on without the channel.
func (e *payEnv) internalWorks(ctx context.Context, w *workload, n int) {
	e.t.Helper()
	resp, err := e.led.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{{
		Id: uint64(1000 + n), DebitAccountId: 901, CreditAccountId: 902, Amount: 10, Ledger: payLedger, Code: 141}}})
	if err != nil || len(resp.GetResults()) > 0 {
		e.t.Fatalf("plain transfer: %v %v", resp.GetResults(), err)
	}
	ids := w.create(ctx, []*ledgerv1.PaymentRequest{{IdempotencyKey: fmt.Sprintf("transfer-%d", n),
		Form: ledgerv1.PaymentForm_PAYMENT_FORM_TRANSFER, Ledger: payLedger, Amount: 10, FromAccountId: 901, ToAccountId: 2}})
	if o := e.waitOrder(ctx, ids[0], 10*time.Second); o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
		e.t.Fatalf("transfer payment: %v", o)
	}
}

func (e *payEnv) channel(ctx context.Context) *ledgerv1.ChannelStatus {
	e.t.Helper()
	resp, err := e.pay.ListChannels(ctx, &ledgerv1.ListChannelsRequest{})
	if err != nil || len(resp.GetChannels()) != 1 || resp.GetChannels()[0].GetName() != payChannel {
		e.t.Fatalf("list channels: %v %v", resp, err)
	}
	return resp.GetChannels()[0]
}

// TestChannelDown: with the channel switched off (SetChannelDegraded), recharges fail at once
// with CHANNEL_UNAVAILABLE and work again once it is on; with the channel's process gone, the
// circuit opens and recharges fail at once too. Ledger transfers and internal transfer
// payments go on all along.
func TestChannelDown(t *testing.T) {
	e := newPayEnv(t, []string{"--seed", "7", "--latency", "2ms"})
	ctx := context.Background()
	e.openAccounts(ctx)
	resp, err := e.led.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 901, Ledger: payLedger, Code: 2001}, {Id: 902, Ledger: payLedger, Code: 2001}}})
	if err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create accounts: %v %v", resp.GetResults(), err)
	}
	w := newWorkload(e)
	if o := e.waitOrder(ctx, e.recharge(ctx, w, "r-up", 1, 1000), 10*time.Second); o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
		t.Fatalf("recharge with the channel up: %v", o)
	}

	d, err := e.pay.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: payChannel, Degraded: true})
	if err != nil || !d.GetStatus().GetDegraded() || !e.channel(ctx).GetDegraded() {
		t.Fatalf("degrade: %v %v", d, err)
	}
	e.expectFailedFast(ctx, w, "r-degraded")
	e.internalWorks(ctx, w, 1)
	d, err = e.pay.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: payChannel, Degraded: false})
	if err != nil || d.GetStatus().GetDegraded() || e.channel(ctx).GetDegraded() {
		t.Fatalf("restore: %v %v", d, err)
	}
	if o := e.waitOrder(ctx, e.recharge(ctx, w, "r-restored", 1, 1000), 10*time.Second); o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
		t.Fatalf("recharge with the channel on again: %v", o)
	}
	if _, err := e.pay.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: "nope", Degraded: true}); status.Code(err) != codes.NotFound {
		t.Errorf("degrade an unknown channel: %v, want NOT_FOUND", err)
	}

	// The channel's process goes away: calls fail (their orders are UNKNOWN: the money may
	// have moved) until the circuit opens.
	_ = e.fake.cmd.Process.Signal(syscall.SIGKILL)
	<-e.fake.done
	var unknown []uint64
	deadline := time.Now().Add(15 * time.Second)
	for n := 0; e.channel(ctx).GetCircuit() != ledgerv1.CircuitState_CIRCUIT_STATE_OPEN; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("the circuit did not open after %d recharges: %v", n, e.channel(ctx))
		}
		if n < 20 {
			unknown = append(unknown, e.recharge(ctx, w, fmt.Sprintf("r-down-%d", n), 1, 100))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("circuit open after %d recharges to the dead channel", len(unknown))
	e.expectFailedFast(ctx, w, "r-open")
	e.internalWorks(ctx, w, 2)
	for id, o := range e.orders(ctx, unknown) {
		// Sent to a dead channel: a call without an answer is never read as a failure.
		if s := o.GetState(); s != ledgerv1.PaymentState_PAYMENT_STATE_UNKNOWN && s != ledgerv1.PaymentState_PAYMENT_STATE_FAILED {
			t.Errorf("recharge %d to the dead channel: %v", id, o)
		} else if s == ledgerv1.PaymentState_PAYMENT_STATE_FAILED && o.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_CHANNEL_UNAVAILABLE {
			t.Errorf("recharge %d to the dead channel failed: %v", id, o.GetResult())
		}
	}
}
