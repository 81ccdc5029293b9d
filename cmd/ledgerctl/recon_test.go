package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/internal/syncbuf"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	reconlib "github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

var renderFindings = []*ledgerv1.ReconFinding{
	{Key: &ledgerv1.ReconFindingKey{BizId: "biz/7", Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_AMOUNT_MISMATCH, FirstSequence: 40},
		ClosedSequence: 52, OrderIds: []uint64{4, 9}, Differences: []*ledgerv1.ReconDifference{{Kind: "channel", OrderId: 4,
			Expected: "the channel moving the order's 100", Found: "exception 0 amount_mismatch: txn T1 amount 90 (open)"}},
		MoreDifferences: 2, State: ledgerv1.ReconFindingState_RECON_FINDING_STATE_RESOLVED, Note: "=refunded\tby hand",
		Created: 1_764_201_600_000_000_000, Updated: 1_764_205_200_500_000_000},
	{Key: &ledgerv1.ReconFindingKey{BizId: "b", Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_PENDING, FirstSequence: 3},
		ClosedSequence: 3, State: ledgerv1.ReconFindingState_RECON_FINDING_STATE_OPEN, Created: 1_764_201_600_000_000_000,
		Updated: 1_764_201_600_000_000_000},
}

// TestReconFindingsRender: the findings table and CSV, exactly (a control character in the
// note does not break the table; a note that starts like a formula is escaped in the CSV).
func TestReconFindingsRender(t *testing.T) {
	var out bytes.Buffer
	if code := printFindings(&out, renderFindings); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := `ID                        KIND             BIZ ID  STATE     ORDERS  WINDOW  DIFFS  CREATED               RESOLVED              NOTE
40/amount_mismatch/biz/7  amount_mismatch  biz/7   resolved  4 9     40-52   3      2025-11-27T00:00:00Z  2025-11-27T01:00:00Z  =refunded by hand
3/pending/b               pending          b       open      -       3-3     0      2025-11-27T00:00:00Z  -                     -

ID                        DIFFERENCE  ORDER  STEP  TRANSFER  EXPECTED                            FOUND
40/amount_mismatch/biz/7  channel     4      0     0         the channel moving the order's 100  exception 0 amount_mismatch: txn T1 amount 90 (open)
40/amount_mismatch/biz/7  ... and 2 more
(amounts in EXPECTED and FOUND are minor units of the order's currency: see ledgerctl orders)
`
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	out.Reset()
	if code := writeFindingsCSV(&out, renderFindings); code != 0 {
		t.Fatalf("csv exit %d", code)
	}
	want = `id,biz_id,kind,state,orders,first_sequence,closed_sequence,created,updated,note,differences_total,difference,difference_kind,order_id,step,transfer_id,expected,found
40/amount_mismatch/biz/7,biz/7,amount_mismatch,resolved,4 9,40,52,2025-11-27T00:00:00Z,2025-11-27T01:00:00.5Z,'=refunded by hand,3,0,channel,4,0,0,the channel moving the order's 100,exception 0 amount_mismatch: txn T1 amount 90 (open)
3/pending/b,b,pending,open,,3,3,2025-11-27T00:00:00Z,2025-11-27T00:00:00Z,,0,,,,,,,
`
	if got := out.String(); got != want {
		t.Errorf("csv:\n%s\nwant:\n%s", got, want)
	}
	out.Reset()
	if code := printFindings(&out, nil); code != 0 || out.String() != "no findings\n" {
		t.Errorf("no findings: %d %q", code, out.String())
	}
	for _, f := range renderFindings {
		if k, err := parseFindingID(findingID(f.GetKey())); err != nil || k.String() != f.GetKey().String() {
			t.Errorf("id %s: %v %v", findingID(f.GetKey()), k, err)
		}
	}
	for _, bad := range []string{"", "40", "40/ledger", "40/ledger/", "x/ledger/b", "40/nope/b", "-1/ledger/b",
		"40/ledger/" + strings.Repeat("b", 65)} {
		if _, err := parseFindingID(bad); err == nil {
			t.Errorf("id %q parsed", bad)
		}
	}
}

// TestReconFollowAndFindings: against an in-process server with a live event stream,
// recon --follow prints the seeded anomaly (a plain ledger transfer carrying a payment's biz id
// within its window, which no payment order accounts for) once when its window closes,
// nothing for a payment that matched nor for a plain transfer whose biz id has no payment
// window (ignored), and at the interrupt a summary, exiting 0; it recorded nothing. Then findings written the way
// ledgerd's runner writes them are listed, resolved, refused when resolved again or unknown.
func TestReconFollowAndFindings(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	seq, err := events.Start(store, events.Config{Fatal: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Stop()
	l, err := actors.Start(store, actors.Config{Shards: 1, Events: seq})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := payments.Start(store, l, payments.Config{Setup: setup, Events: seq,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = engine.Stop(context.Background()) }()
	srv, _ := api.NewServer(api.NewService(l, nil, api.WithEvents(seq)))
	api.RegisterPayments(srv, api.Payments(engine), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oldCtx, oldTick := followContext, followTick
	followContext = func() (context.Context, context.CancelFunc) { return ctx, func() {} }
	followTick = 50 * time.Millisecond
	defer func() { followContext, followTick = oldCtx, oldTick }()
	var out, errs syncbuf.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"recon", "--follow", "--addr", addr, "--window", "1s", "--grace", "0s"}, &out, &errs)
	}()

	if rs, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 2001}, {ID: 2, Ledger: 1, Code: 2001}}); err != nil ||
		rs[0] != ledger.AccountResultOK || rs[1] != ledger.AccountResultOK {
		t.Fatalf("accounts: %v %v", rs, err)
	}
	reps, err := engine.Create([]payment.Request{{Key: "k1", BizID: "pay-ok", Form: payment.Transfer, Ledger: 1, Amount: 100,
		From: 1, To: 2}})
	if err != nil || reps[0].Result != payment.ResultOK {
		t.Fatalf("payment: %+v %v", reps, err)
	}
	reps, err = engine.Create([]payment.Request{{Key: "k2", BizID: "pay-bad", Form: payment.Transfer, Ledger: 1, Amount: 100,
		From: 1, To: 2}})
	if err != nil || reps[0].Result != payment.ResultOK {
		t.Fatalf("payment: %+v %v", reps, err)
	}
	if rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 777, DebitAccountID: 1, CreditAccountID: 2, Amount: 5, Ledger: 1,
		Code: 1, BizID: "pay-bad"}, {ID: 778, DebitAccountID: 1, CreditAccountID: 2, Amount: 5, Ledger: 1,
		Code: 1, BizID: "stray"}}); err != nil || rs[0] != ledger.ResultOK || rs[1] != ledger.ResultOK {
		t.Fatalf("stray transfers: %v %v", rs, err)
	}
	line := regexp.MustCompile(`(?m)^\d+/ledger/pay-bad +ledger +pay-bad +- +\d+-\d+ +1 +unmatched transfer 777: expected a transfer of a payment order, found a transfer with no order's id`)
	deadline := time.Now().Add(10 * time.Second)
	for !line.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the anomaly was not printed:\n%s%s", out.String(), errs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // more ticks: printed once only
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("recon --follow did not end at the interrupt")
	}
	got := out.String()
	if n := len(line.FindAllString(got, -1)); n != 1 || strings.Contains(got, "pay-ok") || strings.Contains(got, "stray") ||
		!strings.HasPrefix(got, "ID ") || !strings.Contains(got, "2 windows closed, 1 matched, 1 findings (ledger 1); 0 windows still open") ||
		!strings.HasSuffix(got, "nothing recorded\n") {
		t.Fatalf("printed %d times:\n%s%s", n, got, errs.String())
	}

	// recon --follow recorded nothing; the runner's findings are listed and resolved.
	if code, out, errs := ctl("recon-findings", "--addr", addr, "--all"); code != 0 || out != "no findings\n" {
		t.Fatalf("recon-findings, none: %d\n%s%s", code, out, errs)
	}
	if _, err := store.CommitRecon(storage.ReconWrite{Now: 1_764_201_600_000_000_000, Checkpoint: 9, Findings: []reconlib.Finding{
		{BizID: "stray", Kind: reconlib.KindLedger, First: 5, Closed: 5, Differences: []payment.Difference{{Kind: payment.DiffUnmatched,
			Transfer: 777, Expected: "a transfer of a payment order", Found: "a transfer with no order's id"}}},
		{BizID: "late", Kind: reconlib.KindPending, First: 8, Closed: 9, Orders: []uint64{3}}}}); err != nil {
		t.Fatal(err)
	}
	code, listed, errs2 := ctl("recon-findings", "--addr", addr, "--limit", "1")
	if code != 0 || !strings.Contains(listed, "8/pending/late ") || strings.Contains(listed, "stray") ||
		!strings.Contains(errs2, "more: ledgerctl recon-findings --after '8/pending/late'") {
		t.Fatalf("first page: %d\n%s%s", code, listed, errs2)
	}
	code, listed, errs2 = ctl("recon-findings", "--addr", addr, "--limit", "1", "--after", "8/pending/late")
	if code != 0 || !strings.Contains(listed, "5/ledger/stray ") || errs2 != "" {
		t.Fatalf("second page: %d\n%s%s", code, listed, errs2)
	}
	if code, out, errs := ctl("resolve-recon", "--addr", addr, "5/ledger/stray", "--note", "reversed by transfer 778"); code != 0 ||
		!regexp.MustCompile(`(?m)^5/ledger/stray +ledger +stray +resolved .* reversed by transfer 778$`).MatchString(out) {
		t.Fatalf("resolve-recon: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := ctl("resolve-recon", "--addr", addr, "5/ledger/stray", "--note", "again"); code != 1 ||
		!strings.Contains(errs, "resolved already") {
		t.Fatalf("resolve-recon twice: %d %s", code, errs)
	}
	if code, _, errs := ctl("resolve-recon", "--addr", addr, "6/ledger/stray"); code != 1 || !strings.Contains(errs, "no finding 6/ledger/stray") {
		t.Fatalf("resolve-recon unknown: %d %s", code, errs)
	}
	if code, _, _ := ctl("resolve-recon", "--addr", addr, "nonsense"); code != 2 {
		t.Fatalf("resolve-recon bad id: %d", code)
	}
	if code, out, _ := ctl("recon-findings", "--addr", addr, "--csv"); code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "8/pending/late,") {
		t.Fatalf("open findings as CSV: %d\n%s", code, out)
	}
	if code, out, _ := ctl("recon-findings", "--addr", addr, "--all"); code != 0 || !strings.Contains(out, "reversed by transfer 778") {
		t.Fatalf("all findings: %d\n%s", code, out)
	}
}
