package api

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
	"github.com/ledgercore/ledger/storage/storagetest"
)

const eodFirstDay ledger.Day = 20261126

type eodFixture struct {
	*fixture
	runner  *eod.Runner
	metrics *Metrics
	fs      *storagetest.StallFS
	now     *atomic.Int64 // the runner's wall clock, Unix ns
}

func (f *eodFixture) setNow(t time.Time) { f.now.Store(t.UnixNano()) }

// newEODFixture serves a two-shard ledger on eodFirstDay with end of day and its metrics:
// the channel receivable (1), a hot merchant (2) and users 10 to 19.
func newEODFixture(t *testing.T) *eodFixture {
	t.Helper()
	fs := storagetest.NewStallFS(vfs.NewMem())
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: eodFirstDay, HotFlushInterval: 5 * time.Millisecond,
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	now := &atomic.Int64{}
	now.Store(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	r := eod.NewRunner(l, store, eod.Config{DrainTimeout: 10 * time.Second, Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }})
	m.WatchEndOfDay(r)
	svc := NewService(l, m, WithEndOfDay(r), WithVerifyInterval(0))
	srv, _ := NewServer(svc)
	ledgerv1.RegisterAdminServiceServer(srv, svc) // tests serve both on one server
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fs.Resume()
		_ = conn.Close()
		srv.Stop()
		l.Stop()
		_ = store.Close()
	})
	f := &eodFixture{fixture: &fixture{client: ledgerv1.NewLedgerServiceClient(conn), admin: ledgerv1.NewAdminServiceClient(conn),
		ledger: l, store: store, ctx: context.Background()}, runner: r, metrics: m, fs: fs, now: now}
	as := []*ledgerv1.Account{{Id: 1, Ledger: 1, Code: 1122, Flags: &ledgerv1.AccountFlags{Internal: true}},
		{Id: 2, Ledger: 1, Code: 2002, Flags: &ledgerv1.AccountFlags{Internal: true, Hot: true}}}
	for id := uint64(10); id < 20; id++ {
		as = append(as, &ledgerv1.Account{Id: id, Ledger: 1, Code: 2001})
	}
	f.accounts(t, as...)
	return f
}

// pay sends n transfers from id on: deposits, user to user, user to the hot merchant.
func (f *eodFixture) pay(t *testing.T, id uint64, n int) {
	t.Helper()
	ts := make([]*ledgerv1.Transfer, n)
	for i := range ts {
		u := 10 + uint64(i%10)
		switch i % 3 {
		case 0:
			ts[i] = tr(id+uint64(i), 1, u, 100+uint64(i))
		case 1:
			ts[i] = tr(id+uint64(i), u, 10+uint64((i+3)%10), 7)
		case 2:
			ts[i] = tr(id+uint64(i), u, 2, 5)
		}
	}
	for i, r := range f.transfers(t, ts...) {
		if r != "ok" {
			t.Fatalf("transfer %d: %s", ts[i].GetId(), r)
		}
	}
}

// dayState is what the store holds of accounting days around eodFirstDay: each shard's day,
// the day starts, the end-of-day records (times included) and the snapshots.
func (f *eodFixture) dayState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := f.ledger.Read(func(v *storage.Reader) error {
		for s := range uint32(2) {
			d, found, err := v.ShardDay(s)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "shard %d day %v %v\n", s, d, found)
		}
		for d := eodFirstDay.Prev(); d <= eodFirstDay+4; d = d.Next() {
			starts, found, err := v.DayStarts(d, 2)
			if err != nil {
				return err
			}
			rec, rfound, err := v.EOD(d)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%v starts %v %v record %v %+v\n", d, starts, found, rfound, rec)
			if err := v.ForEachSnapshot(d, func(id uint64, bal ledger.Balance) error {
				fmt.Fprintf(&b, "  z %d %+v\n", id, bal)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// metric is the value of the counter or gauge with the labels (name, value pairs), or -1 if
// there is no such series.
func (f *eodFixture) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := f.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range s.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			if s.GetCounter() != nil {
				return s.GetCounter().GetValue()
			}
			return s.GetGauge().GetValue()
		}
	}
	return -1
}

func (f *eodFixture) checkMetrics(t *testing.T, what string, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		parts := strings.Split(k, " ")
		if got := f.metric(t, parts[0], parts[1:]...); got != w {
			t.Errorf("%s: %s = %v, want %v", what, k, got, w)
		}
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), text) {
		t.Errorf("%s: %v, want %v with %q", what, err, code, text)
	}
}

// TestEndOfDayOverGRPC: RunEndOfDay closes the current day and answers its phases and trial
// balance; GetEndOfDayStatus follows; a closed day answers its record; every refusal has its
// code and changes nothing in the store; a failed trial balance answers its differences,
// blocks the next day and sets the failure gauges, which a passing run clears; the metrics
// count as documented.
func TestEndOfDayOverGRPC(t *testing.T) {
	f := newEODFixture(t)
	ctx := f.ctx
	f.pay(t, 1000, 90)

	st, err := f.admin.GetEndOfDayStatus(ctx, &ledgerv1.GetEndOfDayStatusRequest{})
	if err != nil || st.GetCurrentDate() != "2026-11-26" || st.GetLastDate() != "" || st.GetLastPhase() != "" {
		t.Fatalf("status of a new store: %v %v", st, err)
	}
	f.checkMetrics(t, "new", map[string]float64{"ledger_eod_runs_total": 0, "ledger_eod_last_failure": 0,
		"ledger_eod_last_closed_day": 0, "ledger_eod_outcomes_total outcome closed": 0})

	before := f.dayState(t)
	for _, c := range []struct{ date, text string }{
		{"2026-11-27", "has not begun"}, {"2026-11-25", "has no end-of-day record"}, {"2026-13-01", "no such date"},
		{"2026-02-29", "no such date"}, {"2026112x", "no such date"}, {"yesterday", "want YYYY-MM-DD"},
	} {
		_, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: c.date})
		wantCode(t, c.date, err, codes.InvalidArgument, c.text)
	}
	if after := f.dayState(t); after != before {
		t.Fatalf("refused runs changed the store:\n%s\nthen\n%s", before, after)
	}
	// Before the day's calendar end (UTC): refused unless early, with or without a date.
	f.setNow(time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC))
	_, err = f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{})
	wantCode(t, "no day due", err, codes.FailedPrecondition, "no day is due: the current accounting day 2026-11-26 ends at 2026-11-27 00:00:00 UTC")
	_, err = f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-26"})
	wantCode(t, "the day not ended", err, codes.FailedPrecondition, "2026-11-26 has not ended")
	if after := f.dayState(t); after != before {
		t.Fatalf("refused runs changed the store:\n%s\nthen\n%s", before, after)
	}
	f.checkMetrics(t, "after refusals", map[string]float64{"ledger_eod_runs_total": 0})
	f.setNow(time.Date(2026, 11, 27, 0, 5, 0, 0, time.UTC))

	res, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{})
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(res.GetSteps(), "\n")
	if res.GetDate() != "2026-11-26" || res.GetPhase() != "archived" || res.GetOutcome() != "closed" || !res.GetPassed() ||
		len(res.GetDifferences()) != 0 || len(res.GetStuck()) != 0 || len(res.GetSteps()) != 5 ||
		!strings.Contains(steps, "switch: new work goes to 2026-11-27") || !strings.Contains(steps, "drain: buffers sent, no leg of 2026-11-26 in flight") ||
		!strings.Contains(steps, "snapshot: 14 closing balances of 2026-11-26") || !strings.Contains(steps, "trial balance: passed") ||
		!strings.Contains(steps, "archive: 2026-11-26 closed and sealed") {
		t.Fatalf("run: %v", res)
	}
	// The deposits: 30 of 100+i for i = 0, 3, ..., 87; the hot merchant got 30 of 5.
	deposits := uint64(0)
	for i := uint64(0); i < 90; i += 3 {
		deposits += 100 + i
	}
	for _, want := range []string{`accounting day 2026-11-26\n`, `trial balance of 2026-11-26: PASSED\n`,
		fmt.Sprintf(`1122 +channel receivable +asset +debit +%d `, deposits), `  2002 +merchant balance +liability +credit +0 +150 `} {
		if !regexp.MustCompile(want).MatchString(res.GetReport()) {
			t.Errorf("report lacks %q:\n%s", want, res.GetReport())
		}
	}
	st, err = f.admin.GetEndOfDayStatus(ctx, &ledgerv1.GetEndOfDayStatusRequest{})
	if err != nil || st.GetCurrentDate() != "2026-11-27" || st.GetLastDate() != "2026-11-26" || st.GetLastPhase() != "archived" ||
		st.GetLastOutcome() != "closed" {
		t.Fatalf("status after the run: %v %v", st, err)
	}
	f.checkMetrics(t, "closed", map[string]float64{"ledger_eod_runs_total": 1, "ledger_eod_outcomes_total outcome closed": 1,
		"ledger_eod_outcomes_total outcome trial_failed": 0, "ledger_eod_outcomes_total outcome drain_timeout": 0,
		"ledger_eod_last_failure": 0, "ledger_eod_last_closed_day": 20261126, "ledger_eod_trial_balance_failed ledger 1": 0})
	if s := f.metric(t, "ledger_eod_last_run_seconds"); s <= 0 || s > 30 {
		t.Errorf("ledger_eod_last_run_seconds = %v", s)
	}

	// The closed day again: its record, nothing run, nothing changed.
	before = f.dayState(t)
	again, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-26"})
	if err != nil || !again.GetPassed() || again.GetOutcome() != "closed" || again.GetReport() != res.GetReport() ||
		len(again.GetSteps()) != 1 || again.GetSteps()[0] != "archived before: the recorded result" || !again.GetArchived() {
		t.Fatalf("the closed day again: %v %v", again, err)
	}
	for _, c := range []struct{ date, text string }{{"2026-11-28", "has not begun"}, {"2026-11-25", "has no end-of-day record"}} {
		_, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: c.date})
		wantCode(t, c.date, err, codes.InvalidArgument, c.text)
	}
	if after := f.dayState(t); after != before {
		t.Fatalf("the closed day's run changed the store:\n%s\nthen\n%s", before, after)
	}
	f.checkMetrics(t, "recorded", map[string]float64{"ledger_eod_runs_total": 1, "ledger_eod_outcomes_total outcome closed": 1})

	// 2026-11-27 stops after a snapshot in which user 10 lost a unit: its trial balance fails.
	f.pay(t, 2000, 9)
	rec := storage.EODRecord{Day: eodFirstDay.Next(), Phase: uint8(eod.PhaseDrained), Outcome: uint8(eod.OutcomeRunning)}
	if err := f.store.PutEOD(&rec); err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.SwitchDay(ctx, eodFirstDay.Next().Next()); err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func(lose uint64) {
		t.Helper()
		w := f.store.WriteSnapshot(eodFirstDay.Next())
		err := f.ledger.Read(func(v *storage.Reader) error {
			return v.ForEachAccount(func(a ledger.Account) error {
				if a.ID == 10 {
					a.Balance.CreditsPosted.Lo -= lose
				}
				if a.Balance == (ledger.Balance{}) {
					return nil
				}
				return w.Add(a.ID, a.Balance)
			})
		})
		if cerr := w.Close(); err != nil || cerr != nil {
			t.Fatal(err, cerr)
		}
	}
	snapshot(1)
	rec.Phase = uint8(eod.PhaseSnapshot)
	if err := f.store.PutEOD(&rec); err != nil {
		t.Fatal(err)
	}
	failed, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-27"})
	if err != nil || failed.GetPassed() || failed.GetOutcome() != "trial balance failed" || failed.GetPhase() != "trial balance" ||
		!strings.Contains(strings.Join(failed.GetDifferences(), "\n"), "account 10: opening") ||
		!strings.Contains(failed.GetReport(), "account 10: opening") {
		t.Fatalf("failed trial balance: %v %v", failed, err)
	}
	f.checkMetrics(t, "failed", map[string]float64{"ledger_eod_runs_total": 2, "ledger_eod_outcomes_total outcome closed": 1,
		"ledger_eod_outcomes_total outcome trial_failed": 1, "ledger_eod_last_failure": 1,
		"ledger_eod_trial_balance_failed ledger 1": 1, "ledger_eod_last_closed_day": 20261126, "ledger_eod_days_open": 1})
	st, err = f.admin.GetEndOfDayStatus(ctx, &ledgerv1.GetEndOfDayStatusRequest{})
	if err != nil || st.GetCurrentDate() != "2026-11-28" || st.GetLastDate() != "2026-11-27" || st.GetLastOutcome() != "trial balance failed" ||
		strings.Join(st.GetOpen(), ";") != "2026-11-27: trial balance, trial balance failed" {
		t.Fatalf("status after the failure: %v %v", st, err)
	}
	// The day after a failed day still switches, drains, snapshots and checks (early here:
	// its calendar end has not come); it opens from the wrong snapshot, so it fails too,
	// and waits for 2026-11-27.
	next, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-28", Early: true})
	if err != nil || next.GetPassed() || next.GetArchived() || !next.GetEarly() || next.GetOutcome() != "trial balance failed" ||
		!strings.Contains(strings.Join(next.GetSteps(), "\n"), "archive: 2026-11-28 waits for 2026-11-27 (trial balance, trial balance failed)") {
		t.Fatalf("the day after a failed day: %v %v", next, err)
	}
	f.checkMetrics(t, "waiting", map[string]float64{"ledger_eod_last_failure": 1, "ledger_eod_days_open": 2})

	// A run without a date runs the failed days again, in order: recomputed from the store
	// (the lost unit was in the snapshot only), they pass and are archived.
	fixed, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{})
	if err != nil || !fixed.GetPassed() || !fixed.GetArchived() || fixed.GetDate() != "2026-11-28" || fixed.GetOutcome() != "closed" ||
		fixed.GetSteps()[0] != "2026-11-27: closed (archived)" {
		t.Fatalf("run after the fix: %v %v", fixed, err)
	}
	f.checkMetrics(t, "fixed", map[string]float64{"ledger_eod_outcomes_total outcome closed": 3,
		"ledger_eod_outcomes_total outcome trial_failed": 2, "ledger_eod_last_failure": 0, "ledger_eod_days_open": 0,
		"ledger_eod_trial_balance_failed ledger 1": 0, "ledger_eod_last_closed_day": 20261128})
}

// TestEndOfDayAcceptOverGRPC: AcceptEndOfDay refuses a missing note and a day whose trial
// balance did not fail, changing nothing; it archives a failed day as accepted with
// differences, with the note, which a run of the day answers from then on.
func TestEndOfDayAcceptOverGRPC(t *testing.T) {
	f := newEODFixture(t)
	ctx := f.ctx
	f.pay(t, 1000, 30)
	if res, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-26"}); err != nil || !res.GetArchived() {
		t.Fatal(res, err)
	}
	w := f.store.WriteSnapshot(eodFirstDay) // the next day opens from a wrong balance
	if err := f.store.Live().ForEachSnapshot(eodFirstDay, func(id uint64, b ledger.Balance) error {
		if id == 10 {
			b.CreditsPosted.Lo++
		}
		return w.Add(id, b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-27"})
	if err != nil || res.GetPassed() || res.GetArchived() || len(res.GetDifferences()) == 0 {
		t.Fatalf("failed day: %v %v", res, err)
	}
	before := f.dayState(t)
	for _, c := range []struct {
		date, note string
		code       codes.Code
		text       string
	}{{"2026-11-27", "", codes.InvalidArgument, "needs a note"}, {"2026-11-27", strings.Repeat("n", 1001), codes.InvalidArgument, "at most 1000 bytes"},
		{"2026-11-26", "ok", codes.FailedPrecondition, "stands at archived (closed)"}, {"2026-11-28", "ok", codes.FailedPrecondition, "has no end-of-day record"},
		{"2026-11-3", "ok", codes.InvalidArgument, "want YYYY-MM-DD"}} {
		_, err := f.admin.AcceptEndOfDay(ctx, &ledgerv1.AcceptEndOfDayRequest{Date: c.date, Note: c.note})
		wantCode(t, c.date+" "+c.note, err, c.code, c.text)
	}
	if after := f.dayState(t); after != before {
		t.Fatalf("refused acceptances changed the store:\n%s\nthen\n%s", before, after)
	}
	acc, err := f.admin.AcceptEndOfDay(ctx, &ledgerv1.AcceptEndOfDayRequest{Date: "2026-11-27", Note: "INC-9: opening edited by hand"})
	r := acc.GetResult()
	if err != nil || !r.GetArchived() || r.GetPassed() || r.GetOutcome() != "accepted with differences" || r.GetNote() != "INC-9: opening edited by hand" ||
		strings.Join(r.GetDifferences(), "\n") != strings.Join(res.GetDifferences(), "\n") {
		t.Fatalf("accept: %v %v", acc, err)
	}
	again, err := f.admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-27"})
	if err != nil || !again.GetArchived() || again.GetNote() != r.GetNote() || again.GetOutcome() != "accepted with differences" {
		t.Fatalf("the accepted day again: %v %v", again, err)
	}
	f.checkMetrics(t, "accepted", map[string]float64{"ledger_eod_last_failure": 0, "ledger_eod_days_open": 0, "ledger_eod_last_closed_day": 20261127})
}

// TestEndOfDayConcurrentRunAborted: a run while another runs (here: stalled on a disk that
// stopped answering) is ABORTED, whatever day it names; the first one then closes the day.
func TestEndOfDayConcurrentRunAborted(t *testing.T) {
	f := newEODFixture(t)
	f.pay(t, 1000, 30)
	f.fs.Stall()
	first := make(chan error, 1)
	go func() {
		res, err := f.admin.RunEndOfDay(f.ctx, &ledgerv1.RunEndOfDayRequest{Date: "2026-11-26"})
		if err == nil && !res.GetPassed() {
			err = fmt.Errorf("not closed: %v", res)
		}
		first <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.fs.Waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first run never reached the disk")
		}
		time.Sleep(time.Millisecond)
	}
	// (A run without a date reads the status first, on a durable view: it would wait for
	// the disk like the first run.)
	for _, date := range []string{"2026-11-26", "2026-11-27", "2026-11-25"} {
		_, err := f.admin.RunEndOfDay(f.ctx, &ledgerv1.RunEndOfDayRequest{Date: date})
		wantCode(t, "a second run "+date, err, codes.Aborted, "an end of day is running")
	}
	f.fs.Resume()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	st, err := f.admin.GetEndOfDayStatus(f.ctx, &ledgerv1.GetEndOfDayStatusRequest{})
	if err != nil || st.GetCurrentDate() != "2026-11-27" || st.GetLastOutcome() != "closed" {
		t.Fatalf("status: %v %v", st, err)
	}
	f.checkMetrics(t, "after", map[string]float64{"ledger_eod_runs_total": 1, "ledger_eod_outcomes_total outcome closed": 1})
}

// TestEndOfDayUnimplemented: a service without a runner answers UNIMPLEMENTED.
func TestEndOfDayUnimplemented(t *testing.T) {
	f := newFixture(t, 1)
	_, err := f.admin.RunEndOfDay(f.ctx, &ledgerv1.RunEndOfDayRequest{})
	wantCode(t, "run", err, codes.Unimplemented, "not configured")
	_, err = f.admin.GetEndOfDayStatus(f.ctx, &ledgerv1.GetEndOfDayStatusRequest{})
	wantCode(t, "status", err, codes.Unimplemented, "not configured")
}

// TestEndOfDayResponseSaysSuperseded: an answer about a day whose acceptance was superseded
// (checked again at the archive) says so, with the note, whatever its outcome now.
func TestEndOfDayResponseSaysSuperseded(t *testing.T) {
	for _, o := range []eod.Outcome{eod.OutcomeClosed, eod.OutcomeTrialFailed} {
		res := eod.Result{Day: eodFirstDay, Phase: eod.PhaseArchived, Outcome: o, Note: "INC-1", Superseded: true}
		out, err := eodResponse(&res, nil)
		if err != nil || out.GetNote() != "INC-1" || !strings.Contains(strings.Join(out.GetSteps(), "\n"), `(note "INC-1") is superseded`) {
			t.Errorf("%v: %v %v", o, out, err)
		}
		res.Superseded = false
		if out, err := eodResponse(&res, nil); err != nil || strings.Contains(strings.Join(out.GetSteps(), "\n"), "superseded") {
			t.Errorf("%v, not superseded: %v %v", o, out, err)
		}
	}
}

// TestEndOfDayReportCurrency: the day's table prints each ledger's amounts in the currency the
// service names for it, and a ledger it does not name in minor units.
func TestEndOfDayReportCurrency(t *testing.T) {
	b := accounting.NewDayBuilder(rules.Default(), eodFirstDay)
	moved := ledger.Movement{In: ledger.Balance{DebitsPosted: ledger.U128(6898101)}}
	b.Add(ledger.Account{ID: 1, Ledger: 1, Code: 1122, Balance: ledger.Balance{DebitsPosted: ledger.U128(6898101)}}, ledger.Balance{}, &moved)
	b.Add(ledger.Account{ID: 2, Ledger: 2, Code: 1122, Balance: ledger.Balance{DebitsPosted: ledger.U128(6898101)}}, ledger.Balance{}, &moved)
	rep := b.Report()
	res := eod.Result{Day: eodFirstDay, Phase: eod.PhaseTrial, Outcome: eod.OutcomeTrialFailed, Report: &rep}
	out, err := eodResponse(&res, accounting.Currencies{1: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ledger 1, amounts in CNY", "68,981.01", "ledger 2, amounts in minor units", "6898101",
		"(currency -: amounts in minor units"} {
		if !strings.Contains(out.GetReport(), want) {
			t.Errorf("the report has no %q:\n%s", want, out.GetReport())
		}
	}
}
