package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

// TestStatementCommands: ledgerctl statement, exceptions --statements and resolve-statement
// against a ledger whose payment engine and simulated channel share a clock the test moves
// (a statement is imported only once its day is over). The channel collects for an order
// number that is none of the ledger's: the day's statement is refused while the day lasts
// (exit 2); once it is over, a long line, booked and recorded (exit 1, a table or CSV); the
// same again writes nothing new; the record is listed, not reversible, and closed. Then a
// real recharge through the channel, with a status conflict recorded after it: the next
// day's statement matches it, the conflict's txn is no money txn, the day is clean (exit 0).
func TestStatementCommands(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	secret := []byte("0123456789abcdef")
	ctx := context.Background()
	f, err := fake.Start("127.0.0.1:0", fake.Config{Secret: secret, Seed: 1, Sync: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close(ctx) }()
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := actors.Start(store, actors.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"demo"})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := payments.Start(store, l, payments.Config{Setup: setup,
		Clients: map[string]channel.Client{"demo": channel.NewHTTPClient(f.URL(), "http://127.0.0.1:1/nowhere", nil)},
		Secrets: map[string][]byte{"demo": secret}, Now: func() uint64 { return uint64(now().UnixNano()) },
		Gateway: gateway.Config{Timeout: time.Second, RateLimit: 1e6, Burst: 1000, MaxInFlight: 32},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = engine.Stop(ctx) }()
	srv, _ := api.NewServer(api.NewService(l, nil))
	api.RegisterPayments(srv, api.Payments(engine), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	if r, err := channel.NewHTTPClient(f.URL(), "http://127.0.0.1:1/nowhere", nil).Do(ctx, channel.Request{Op: channel.Pay,
		OrderNo: "P999999", Amount: 42, Currency: "CNY"}); err != nil || r.Status != channel.Succeeded {
		t.Fatalf("the channel's collection: %+v %v", r, err)
	}
	const date = "2026-11-26"
	if code, out, errs := ctl("statement", "--channel", "demo", "--date", date, "--addr", addr); code != 2 ||
		!strings.Contains(errs, "InvalidArgument") || !strings.Contains(errs, "the day has not ended") {
		t.Fatalf("statement of a day not over: exit %d\n%s%s", code, out, errs)
	}
	clock.Store(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC).UnixNano()) // the day is over
	longRow := regexp.MustCompile(`(?m)^ +long +P999999 +0 +\S+ +pay +succeeded +0\.42 +- +0\.00 +CNY +1 +0\.42 +0\.00 +no such order$`)
	for range 2 {
		if code, out, errs := ctl("statement", "--channel", "demo", "--date", date, "--addr", addr); code != 1 || !longRow.MatchString(out) {
			t.Fatalf("statement with a long line: exit %d\n%s%s", code, out, errs)
		}
	}
	code, out, errs := ctl("statement", "--channel", "demo", "--date", date, "--addr", addr, "--csv")
	if code != 1 || !strings.HasPrefix(out, "class,order_no,order_id,txn,op,their_status,their_amount,our_status,our_amount,currency,ledger,booked_in,reversible_out,note\nlong,P999999,0,") ||
		!strings.Contains(out, ",pay,succeeded,0.42,,0.00,CNY,1,0.42,0.00,no such order\n") ||
		!strings.Contains(errs, "(imported before)") || !strings.Contains(errs, "new records 0") {
		t.Fatalf("statement --csv: exit %d\n%s%s", code, out, errs)
	}
	txn := strings.Split(strings.Split(out, "\n")[1], ",")[3]
	recRow := regexp.MustCompile(fmt.Sprintf(`(?m)^demo +%s +%s +long +open +P999999 +succeeded +0\.42 +- +0\.00 +CNY +0\.42 +0\.00 +no such order$`, date, txn))
	if code, out, errs = ctl("exceptions", "--addr", addr, "--statements"); code != 0 || !recRow.MatchString(out) {
		t.Fatalf("exceptions --statements: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("resolve-statement", "--addr", addr, "demo", date, txn, "reverse"); code != 1 ||
		!strings.Contains(errs, "not_refundable") {
		t.Fatalf("reverse a long line: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("resolve-statement", "--addr", addr, "demo", date, txn, "close", "--note", "finance"); code != 0 || out != "ok\n" {
		t.Fatalf("resolve-statement close: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = ctl("exceptions", "--addr", addr, "--statements"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("exceptions --statements after closing: exit %d\n%s", code, out)
	}

	// A real order, reconciled: the next day's statement lists its collection, matched. A
	// status conflict the order then recorded (a failure notice under another txn) is no
	// money txn of the books: not short, not a difference. The day is clean: exit 0.
	const next = "2026-11-27"
	clock.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	if rs, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 2001}}); err != nil || rs[0] != ledger.AccountResultOK {
		t.Fatalf("account: %v %v", rs, err)
	}
	reps, err := engine.Create([]payment.Request{{Key: "r1", BizID: "biz-r1", Form: payment.Recharge, Ledger: 1, Amount: 100,
		To: 1, Channel: "demo", ChannelAccount: "card-1"}})
	if err != nil || reps[0].Result != payment.ResultOK {
		t.Fatalf("recharge: %v %v", reps, err)
	}
	id := reps[0].Order.ID
	settled := func() *payment.Order {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if os, err := engine.Orders([]uint64{id}); err == nil && os[0] != nil && os[0].State.Final() && !os[0].Active() {
				return os[0]
			}
		}
		t.Fatal("the recharge did not settle")
		return nil
	}
	if o := settled(); o.State != payment.Succeeded {
		t.Fatalf("the recharge: %v", o.State)
	}
	if res, err := engine.Notice("demo", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: "T-CONFLICT",
		Status: channel.Failed}); err != nil || res != payment.ResultOK {
		t.Fatalf("a failure notice for a succeeded order: %v %v", res, err)
	}
	if o := settled(); len(o.Exceptions) != 1 || o.Exceptions[0].Booked() {
		t.Fatalf("the status conflict: %+v", o.Exceptions)
	}
	clock.Store(time.Date(2026, 11, 28, 0, 10, 0, 0, time.UTC).UnixNano())
	code, out, errs = ctl("statement", "--channel", "demo", "--date", next, "--addr", addr, "--csv")
	if code != 0 || out != "class,order_no,order_id,txn,op,their_status,their_amount,our_status,our_amount,currency,ledger,booked_in,reversible_out,note\n" ||
		!strings.Contains(errs, "matched 1") || strings.Contains(errs, "T-CONFLICT") {
		t.Fatalf("a clean day with a reconciled order: exit %d\n%s%s", code, out, errs)
	}
}

// The CSV of differences escapes the channel's text that starts like a formula.
func TestDifferencesCSVEscapesFormulas(t *testing.T) {
	var out strings.Builder
	writeDifferencesCSV(&out, []*ledgerv1.StatementDifference{{OrderNo: "=HYPERLINK(1)", Txn: "+1", Note: "@x"}})
	got := out.String()
	for _, want := range []string{"'=HYPERLINK(1)", "'+1", "'@x"} {
		if !strings.Contains(got, want) {
			t.Fatalf("csv %q lacks %q", got, want)
		}
	}
}

// TestDifferenceCells: a difference's amounts are in its currency's units, with separators in
// the table and exact decimals in the CSV; a currency ISO 4217 does not list leaves them in
// minor units ("-" in the table, empty in the CSV).
func TestDifferenceCells(t *testing.T) {
	for _, tc := range []struct {
		d          *ledgerv1.StatementDifference
		table, csv string
	}{
		{&ledgerv1.StatementDifference{TheirAmount: 6898101, OurAmount: 5, Currency: "CNY", BookedIn: 6898096},
			"68,981.01 0.05 CNY 68,980.96 0.00", "68981.01 0.05 CNY 68980.96 0.00"},
		{&ledgerv1.StatementDifference{TheirAmount: 1200, OurAmount: 1000, Currency: "JPY", ReversibleOut: 200},
			"1,200 1,000 JPY 0 200", "1200 1000 JPY 0 200"},
		{&ledgerv1.StatementDifference{TheirAmount: 6898101, Currency: "ZZZ", BookedIn: 6898101},
			"6898101 0 - 6898101 0", "6898101 0  6898101 0"},
	} {
		for _, table := range []bool{true, false} {
			c := differenceCells(tc.d, table)
			got := strings.Join([]string{c[6], c[8], c[9], c[11], c[12]}, " ")
			want := tc.csv
			if table {
				want = tc.table
			}
			if got != want {
				t.Errorf("%v (table %t): %q, want %q", tc.d, table, got, want)
			}
		}
	}
}
