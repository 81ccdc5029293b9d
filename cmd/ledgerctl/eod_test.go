package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// TestEndOfDayCommand: ledgerctl eod against a running server prints the phases, the day's
// trial balance and the outcome (exit 0 when closed), --status the current day and the last
// end of day; a failed trial balance prints the differences and exits 1; a refused run, a
// bad flag, an argument and an unreachable server exit 2; --help exits 0.
func TestEndOfDayCommand(t *testing.T) {
	const day ledger.Day = 20261126
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := actors.Start(store, actors.Config{Shards: 1, FirstDay: day})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	// 00:05 UTC the day after: the first day is due, no later one.
	r := eod.NewRunner(l, store, eod.Config{Now: func() time.Time { return time.Date(2026, 11, 27, 0, 5, 0, 0, time.UTC) }})
	svc := api.NewService(l, nil, api.WithEndOfDay(r), api.WithCurrencies(accounting.Currencies{1: "CNY"}))
	srv, _ := api.NewServer(svc)
	ledgerv1.RegisterAdminServiceServer(srv, svc) // tests serve both on one server
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 1122}, {ID: 10, Ledger: 1, Code: 2001}}); err != nil {
		t.Fatal(err)
	}
	if rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 7, DebitAccountID: 1, CreditAccountID: 10, Amount: 1234, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
		t.Fatal(rs, err)
	}
	addr := lis.Addr().String()
	eodCtl := func(args ...string) (int, string, string) {
		var out, errs bytes.Buffer
		code := run(append([]string{"eod", "--addr", addr}, args...), &out, &errs)
		return code, out.String(), errs.String()
	}

	code, out, errs := eodCtl("--status")
	if code != 0 || out != "current accounting day  2026-11-26\n" || errs != "" {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = eodCtl()
	wantHead := `end of day 2026-11-26
  switch: new work goes to 2026-11-27
  drain: buffers sent, no leg of 2026-11-26 in flight
  snapshot: 2 closing balances of 2026-11-26
  trial balance: passed
  archive: 2026-11-26 closed and sealed

accounting day 2026-11-26
LEDGER  CURRENCY  DEBITS POSTED  CREDITS POSTED  DEBITS HELD  DEBITS RELEASED  CREDITS HELD  CREDITS RELEASED
1       CNY               12.34           12.34         0.00             0.00          0.00              0.00

closing balances
ledger 1, amounts in CNY
SUBJECT  NAME                 CATEGORY   SIDE    DEBITS POSTED  CREDITS POSTED  DEBITS PENDING  CREDITS PENDING  BALANCE  ACCOUNTS
1000     assets               asset      debit           12.34            0.00            0.00             0.00    12.34         1
  1122   channel receivable   asset      debit           12.34            0.00            0.00             0.00    12.34         1
`
	wantTail := `total                                    debit           12.34           12.34            0.00             0.00     0.00         2
balanced
trial balance of 2026-11-26: PASSED
2026-11-26: closed (archived)
`
	if code != 0 || !strings.HasPrefix(out, wantHead) || !strings.HasSuffix(out, wantTail) || errs != "" {
		t.Fatalf("eod: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = eodCtl("--date", "2026-11-26")
	if code != 0 || !strings.HasPrefix(out, "end of day 2026-11-26\n  archived before: the recorded result\n\naccounting day 2026-11-26\n") ||
		!strings.HasSuffix(out, wantTail) {
		t.Fatalf("eod of the closed day: exit %d\n%s", code, out)
	}
	code, out, _ = eodCtl("--status")
	if code != 0 || out != "current accounting day  2026-11-27\nlast end of day         2026-11-26: archived, closed\n" {
		t.Fatalf("status after: exit %d\n%s", code, out)
	}

	// 2026-11-27 stops after its snapshot; the closing balance of 2026-11-26 it opens from
	// lost a unit of account 10 (however often 2026-11-27 is recomputed, it fails).
	ctx := context.Background()
	rec := storage.EODRecord{Day: day.Next(), Phase: uint8(eod.PhaseSnapshot), Outcome: uint8(eod.OutcomeRunning)}
	if err := l.SwitchDay(ctx, day.Next().Next()); err != nil {
		t.Fatal(err)
	}
	for d, lost := range map[ledger.Day]uint64{day: 1, day.Next(): 0} {
		w := store.WriteSnapshot(d)
		if err := w.Add(1, ledger.Balance{DebitsPosted: ledger.U128(1234)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(10, ledger.Balance{CreditsPosted: ledger.U128(1234 - lost)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.PutEOD(&rec); err != nil {
		t.Fatal(err)
	}
	code, out, errs = eodCtl()
	if code != 1 || errs != "" || !strings.HasPrefix(out, "end of day 2026-11-27\n  trial balance: FAILED, 1 differences; 2026-11-27 is not archived\n") ||
		!strings.Contains(out, "account 10: opening [posted 0/1233 pending 0/0] moved by [posted +0/+0 pending +0-0/+0-0] is [posted 0/1233 pending 0/0], closing is [posted 0/1234 pending 0/0]") ||
		!strings.HasSuffix(out, "trial balance of 2026-11-27: FAILED\n2026-11-27: trial balance failed (trial balance)\n") {
		t.Fatalf("failed trial balance: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = eodCtl("--status")
	if code != 0 || out != "current accounting day  2026-11-28\nlast end of day         2026-11-27: trial balance, trial balance failed\n"+
		"not archived            2026-11-27: trial balance, trial balance failed\n" {
		t.Fatalf("status after the failure: exit %d\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"--date", "2026-11-28"}, "code = FailedPrecondition desc = eod: precondition failed: 2026-11-28 has not ended: it ends at 2026-11-29 00:00:00 UTC"},
		{[]string{"--date", "2026-11-29"}, "code = InvalidArgument desc = eod: invalid request: 2026-11-29 has not begun"},
		{[]string{"--date", "2026-11-26", "--accept", "--note", "x"}, "code = FailedPrecondition desc = eod: precondition failed: 2026-11-26 stands at archived (closed)"},
		{[]string{"--date", "2026-11-27", "--accept"}, "--accept needs --date and --note"},
		{[]string{"--accept", "--note", "x"}, "--accept needs --date and --note"},
		{[]string{"--date", "2026-11-27", "--note", "x"}, "--note goes with --accept"},
		{[]string{"--date", "2026-11-25"}, "code = InvalidArgument"},
		{[]string{"--date", "26/11/2026"}, "code = InvalidArgument"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"2026-11-26"}, "usage:"},
	} {
		code, out, errs := eodCtl(c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.err) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, want exit 2 and %q", c.args, code, out, errs, c.err)
		}
	}
	// Accepted with a note: archived (exit 0), the note printed and answered from then on.
	code, out, errs = eodCtl("--date", "2026-11-27", "--accept", "--note", "INC-3: snapshot edited; checked against the bank")
	if code != 0 || errs != "" || !strings.Contains(out, "account 10: opening") ||
		!strings.HasSuffix(out, "accepted with the note: INC-3: snapshot edited; checked against the bank\n2026-11-27: accepted with differences (archived)\n") {
		t.Fatalf("accept: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = eodCtl("--date", "2026-11-27"); code != 0 || !strings.Contains(out, "accepted with the note: INC-3") {
		t.Fatalf("the accepted day: exit %d\n%s", code, out)
	}
	// Accepting again: refused, the day is archived.
	if code, _, errs = eodCtl("--date", "2026-11-27", "--accept", "--note", "again"); code != 2 || !strings.Contains(errs, "stands at archived (accepted with differences)") {
		t.Fatalf("accept again: exit %d %s", code, errs)
	}
	// Early, on request: the day closes before its end (it is checked and archived).
	code, out, errs = eodCtl("--date", "2026-11-28", "--early")
	if code != 0 || errs != "" || !strings.HasSuffix(out, "closed early, before its calendar end, on request\n2026-11-28: closed (archived)\n") {
		t.Fatalf("early: exit %d\n%s%s", code, out, errs)
	}
	var o, e bytes.Buffer
	if code := run([]string{"eod", "--addr", "127.0.0.1:1", "--timeout", "2s", "--status"}, &o, &e); code != 2 || !strings.Contains(e.String(), "eod: ") {
		t.Errorf("unreachable: exit %d %q", code, e.String())
	}
	o.Reset()
	e.Reset()
	if code := run([]string{"eod", "--help"}, &o, &e); code != 0 || !strings.Contains(e.String(), "-date") || !strings.Contains(e.String(), "-status") {
		t.Errorf("--help: exit %d %q", code, e.String())
	}
}
