package payments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

// stubChannel decides requests by a function of the request (nil: succeeded at once,
// txn "T-" + order number); queries answer Processing (the channel still has it).
type stubChannel struct {
	do func(r channel.Request) channel.Result
}

func (c *stubChannel) Do(_ context.Context, r channel.Request) (channel.Result, error) {
	if c.do != nil {
		return c.do(r), nil
	}
	return channel.Result{Status: channel.Succeeded, Txn: "T-" + r.OrderNo, Amount: r.Amount}, nil
}

func (c *stubChannel) Query(context.Context, channel.Op, string) (channel.Result, error) {
	return channel.Result{Status: channel.Processing}, nil
}

// stubRig is an engine on a stub channel "bank" with a settable clock.
type stubRig struct {
	t      *testing.T
	engine *Engine
	ledger *actors.Ledger
	clock  atomic.Uint64
}

func newStubRig(t *testing.T, c *stubChannel, at time.Time) *stubRig {
	return newStubRigOf(t, c, at, nil)
}

// newStubRigOf is newStubRig over any client, with adjust (if any) applied to the engine's
// configuration before it starts.
func newStubRigOf(t *testing.T, c channel.Client, at time.Time, adjust func(*Config)) *stubRig {
	r := &stubRig{t: t}
	r.clock.Store(uint64(at.UnixNano()))
	store, err := storage.Open(t.TempDir(), storage.Options{Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if r.ledger, err = actors.Start(store, actors.Config{Shards: 2}); err != nil {
		t.Fatal(err)
	}
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"bank"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Setup: setup, Clients: map[string]channel.Client{"bank": c},
		Secrets: map[string][]byte{"bank": secret}, Now: r.clock.Load,
		Gateway: gateway.Config{Timeout: time.Second, RateLimit: 1e6, Burst: 1000, MaxInFlight: 32},
		Tick:    20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if adjust != nil {
		adjust(&cfg)
	}
	r.engine, err = Start(store, r.ledger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.engine.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		r.ledger.Stop()
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	rs, err := r.ledger.CreateAccounts([]ledger.Account{{ID: alice, Ledger: 1, Code: 2001}})
	if err != nil || rs[0] != ledger.AccountResultOK {
		t.Fatalf("accounts: %v %v", rs, err)
	}
	return r
}

func (r *stubRig) set(at time.Time) { r.clock.Store(uint64(at.UnixNano())) }

// wait polls order id until cond holds.
func (r *stubRig) wait(id uint64, cond func(o *payment.Order) bool) *payment.Order {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		os, err := r.engine.Orders([]uint64{id})
		if err != nil {
			r.t.Fatal(err)
		}
		if os[0] != nil && cond(os[0]) {
			return os[0]
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("order %d: %+v", id, os[0])
		}
	}
}

func (r *stubRig) recharge(key string, amount uint64) uint64 {
	r.t.Helper()
	reps, err := r.engine.Create([]payment.Request{{Key: key, BizID: "biz-" + key, Form: payment.Recharge, Ledger: 1,
		Amount: amount, To: alice, Channel: "bank", ChannelAccount: "card-1"}})
	if err != nil || reps[0].Result != payment.ResultOK {
		r.t.Fatalf("create: %v %v", reps, err)
	}
	return reps[0].Order.ID
}

func (r *stubRig) balance(id uint64) int64 {
	r.t.Helper()
	var a ledger.Account
	if err := r.ledger.Read(func(v *storage.Reader) (err error) { a, _, err = v.Account(id); return err }); err != nil {
		r.t.Fatal(err)
	}
	return int64(a.CreditsPosted.Lo) - int64(a.DebitsPosted.Lo)
}

func (r *stubRig) suspense() int64 {
	return r.balance(r.engine.cfg.Setup.PlatformAccount(1, 2005, ""))
}

// settledSuspense waits until the suspense balance holds still at want (hot accounts lag).
func (r *stubRig) suspenseIs(want int64) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if r.suspense() == want {
			return true
		}
	}
	return false
}

func stmtBody(lines ...string) []byte {
	return []byte(strings.Join(channel.StatementHeader, ",") + "\n" + strings.Join(lines, ""))
}

// refundsHeld answers a duplicate's refund Processing (the channel has it, the callback comes
// later); everything else succeeds at once.
func refundsHeld() *stubChannel {
	return &stubChannel{do: func(q channel.Request) channel.Result {
		if q.Op == channel.Refund {
			return channel.Result{Status: channel.Processing}
		}
		return channel.Result{Status: channel.Succeeded, Txn: "T-" + q.OrderNo, Amount: q.Amount}
	}}
}

// duplicate makes order id's channel collect again under txn dup and waits until the
// record's refund is with the channel.
func (r *stubRig) duplicate(id uint64, dup string, amount uint64) *payment.Order {
	r.t.Helper()
	res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: dup,
		Status: channel.Succeeded, Amount: amount})
	if err != nil || res != payment.ResultOK {
		r.t.Fatalf("duplicate: %v %v", res, err)
	}
	return r.wait(id, func(o *payment.Order) bool {
		return len(o.Exceptions) == 1 && o.Exceptions[0].Step == payment.ExcRefunding
	})
}

// TestStatementReverseRefusedWhileRecordHoldsTxn: a second collection (a duplicate payment,
// in suspense, its refund with the channel) is missing from the day's statement: it is short,
// but its money is the order's record's, so REVERSE of the short is refused while that record
// is not resolved. The channel then confirms the record's refund and the order takes the
// money out of suspense, once: suspense ends at 0. (Before the fix, the operator's reversal
// and the record's refund both took the 1,000 out: suspense -1,000.) Then, the record
// resolved, the short's reversible_out is the operator's to reverse.
func TestStatementReverseRefusedWhileRecordHoldsTxn(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o := r.duplicate(id, "DUP-1", 1000)
	if !r.suspenseIs(1000) {
		t.Fatalf("suspense %d after the duplicate, want 1000", r.suspense())
	}
	// The statement has the order's own txn, not the duplicate's (the day is otherwise done).
	body := stmtBody(date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n")
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[payment.LineShort] != 1 {
		t.Fatalf("report %+v", rep)
	}
	res, _, err := r.engine.ResolveStatement("bank", date, "DUP-1", payment.ResolveReverse, "never collected")
	if err != nil {
		t.Fatal(err)
	}
	if res != payment.ResultNotRefundable {
		t.Fatalf("REVERSE while the order's record 0 is %v: %v, want not_refundable", o.Exceptions[0].Step, res)
	}
	// The channel confirms the record's refund: the order unbooks its suspense.
	x := o.Exceptions[0]
	nres, err := r.engine.Notice("bank", channel.Notice{Op: channel.Refund, OrderNo: payment.ExceptionNo(id, 0, x.Attempt),
		Txn: "RF-1", Status: channel.Succeeded, Amount: 1000})
	if err != nil || nres != payment.ResultOK {
		t.Fatalf("refund notice: %v %v", nres, err)
	}
	r.wait(id, func(o *payment.Order) bool { return !o.Active() })
	if !r.suspenseIs(0) {
		t.Fatalf("suspense %d after the reversal and the record's refund, want 0 (the duplicate's money left the books twice; reverse answered %v)",
			r.suspense(), res)
	}
	// Once the order's record is resolved the short keeps its reversible_out (L2): an operator
	// who finds the channel never collected DUP-1 (and paid its refund of its own money)
	// reverses it, once: the channel receivable loses the 1,000 through suspense.
	res, rec, err := r.engine.ResolveStatement("bank", date, "DUP-1", payment.ResolveReverse, "never collected")
	if err != nil || res != payment.ResultOK || rec.Out != 1000 || rec.Step != payment.ExcResolved {
		t.Fatalf("REVERSE once the order's record is resolved: %v %v %+v", res, err, rec)
	}
	if !r.suspenseIs(-1000) {
		t.Fatalf("suspense %d after the reversal, want -1000", r.suspense())
	}
	if res, _, _ := r.engine.ResolveStatement("bank", date, "DUP-1", payment.ResolveReverse, ""); res != payment.ResultExceptionNotOpen {
		t.Fatalf("a second REVERSE: %v", res)
	}
}

// TestStatementSignedForAnotherDayRefused: a statement with no lines is the same bytes
// whatever its day; the channel's signature binds the date, so a quiet day's signed empty
// statement, replayed as the statement of a busy day, does not verify: refused with
// ErrStatementSignature, nothing written, nothing booked (before the fix every txn of the day
// was short and a refund's money booked back into suspense).
func TestStatementSignedForAnotherDayRefused(t *testing.T) {
	r := newStubRig(t, &stubChannel{}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	// A duplicate collection, refunded at once by the channel (both recorded mid-day).
	if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: "DUP-1",
		Status: channel.Succeeded, Amount: 1000}); err != nil || res != payment.ResultOK {
		t.Fatalf("duplicate: %v %v", res, err)
	}
	r.wait(id, func(o *payment.Order) bool {
		return len(o.Exceptions) == 1 && o.Exceptions[0].Refund != "" && !o.Active()
	})
	if !r.suspenseIs(0) {
		t.Fatalf("suspense %d, want 0", r.suspense())
	}
	// The channel's signed statement of a quiet day (2020-01-01: nothing happened).
	empty := stmtBody()
	sig := channel.SignStatement(secret, "2020-01-01", empty)
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", "2026-11-26", empty, sig)
	if err == nil {
		t.Logf("2020-01-01's empty statement imported as 2026-11-26's: %d short, %d new records", rep.Counts[payment.LineShort], rep.NewRecords)
	}
	if err == nil && rep.Counts[payment.LineShort] > 0 {
		time.Sleep(100 * time.Millisecond)
		t.Fatalf("a statement signed for another day was imported as 2026-11-26's: %d short txns, suspense now %d (booked from it)",
			rep.Counts[payment.LineShort], r.suspense())
	}
	if !errors.Is(err, channel.ErrStatementSignature) {
		t.Fatalf("the statement of 2020-01-01 as 2026-11-26's: %v, want ErrStatementSignature", err)
	}
	var recs int
	if err := r.ledger.Read(func(v *storage.Reader) error {
		return v.StatementRecords(true, "", "", "", func(*payment.StatementRecord) bool { recs++; return true })
	}); err != nil || recs != 0 || !r.suspenseIs(0) {
		t.Fatalf("the refused statement wrote %d records (%v), suspense %d", recs, err, r.suspense())
	}
}

// TestStatementLaterStatementClearsShort: the day's first statement lacks a refund the
// channel made (fetched before the channel listed it, or a clock apart near midnight): the
// refund is short and its money booked back into suspense at once. The channel's complete
// statement of the day has the refund: the short record is cleared, its booking booked back
// through suspense by a posting of its own, and the record resolved: suspense 0, no record
// open.
func TestStatementLaterStatementClearsShort(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o := r.duplicate(id, "DUP-1", 1000)
	refundNo := payment.ExceptionNo(id, 0, o.Exceptions[0].Attempt)
	r.set(time.Date(2026, 11, 26, 12, 30, 0, 0, time.UTC))
	if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Refund, OrderNo: refundNo, Txn: "RF-1",
		Status: channel.Succeeded, Amount: 1000}); err != nil || res != payment.ResultOK {
		t.Fatalf("refund: %v %v", res, err)
	}
	r.wait(id, func(o *payment.Order) bool { return !o.Active() })
	if !r.suspenseIs(0) {
		t.Fatalf("suspense %d, want 0", r.suspense())
	}
	pay := date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"
	dup := date + ",DUP-1,pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:10:00Z\n"
	refund := date + ",RF-1,refund," + refundNo + ",DUP-1,succeeded,1000,CNY,2026-11-26T12:29:59Z\n"
	first := stmtBody(pay, dup)                           // fetched before the channel listed the refund
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", date, first, channel.SignStatement(secret, date, first))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first: %+v", rep.Counts)
	full := stmtBody(pay, dup, refund)
	rep, err = r.engine.ImportStatementFile("bank", date, full, channel.SignStatement(secret, date, full))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full: %+v", rep.Counts)
	if rep.Cleared != 1 {
		t.Fatalf("cleared %d short records, want 1", rep.Cleared)
	}
	time.Sleep(100 * time.Millisecond)
	var open []string
	if err := r.ledger.Read(func(v *storage.Reader) error {
		return v.StatementRecords(false, "", "", "", func(x *payment.StatementRecord) bool {
			open = append(open, x.Txn+" "+x.Class.String()+" "+x.Step.String())
			return true
		})
	}); err != nil {
		t.Fatal(err)
	}
	if s := r.suspense(); s != 0 || len(open) != 0 {
		t.Fatalf("the refund is on the day's statement, yet suspense holds %d and records stay open: %v", s, open)
	}
}

// TestStatementLineInAnotherCurrencySettlesNothing: the statement names each line's
// currency, a callback does not. A signed line in USD under the number of an order awaiting
// its outcome in CNY is not news to it: it is not applied as its callback (which would credit
// the user 1,000 CNY for 1,000 US cents); it is an amount mismatch that books nothing.
func TestStatementLineInAnotherCurrencySettlesNothing(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, &stubChannel{do: func(channel.Request) channel.Result {
		return channel.Result{Status: channel.Processing}
	}}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Processing })
	body := stmtBody(date + ",T-X,pay," + payment.OrderNo(id) + ",,succeeded,1000,USD,2026-11-26T12:00:00Z\n")
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
	if err != nil {
		t.Fatal(err)
	}
	os, _ := r.engine.Orders([]uint64{id})
	if rep.Applied > 0 || os[0].State == payment.Succeeded || rep.Counts[payment.LineAmount] != 1 {
		t.Fatalf("a USD line settled a CNY order: applied %d, order %v, alice %d; report %+v", rep.Applied, os[0].State,
			r.balance(alice), rep.Counts)
	}
}

// TestStatementInFlightLineRecordedOnceSettled: a line about a request still in flight (a
// refund of 999 under the refund request of a duplicate's record of 1,000, still refunding)
// gets no record: it is pending. Once the record's refund failed, importing again records
// the 999 the channel paid out with its money (reversible_out; REVERSE waits for the order's
// record). Records are written once per (channel, day, txn), so one written while in flight
// (with no money) could never have been fixed.
func TestStatementInFlightLineRecordedOnceSettled(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o := r.duplicate(id, "DUP-1", 1000)
	refundNo := payment.ExceptionNo(id, 0, o.Exceptions[0].Attempt)
	pay := date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"
	dup := date + ",DUP-1,pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:01Z\n"
	refund := date + ",RF-1,refund," + refundNo + ",DUP-1,succeeded,999,CNY,2026-11-26T12:00:02Z\n"
	body := stmtBody(pay, dup, refund)
	sig := channel.SignStatement(secret, date, body)
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", date, body, sig)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("while refunding: %+v new records %d", rep.Counts, rep.NewRecords)
	if rep.NewRecords != 0 || rep.Pending != 1 {
		t.Fatalf("a line in flight: %d new records, %d pending; want none, 1", rep.NewRecords, rep.Pending)
	}
	// The record's refund request fails at the channel: the record is open for an operator.
	if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Refund, OrderNo: refundNo, Txn: "RF-F",
		Status: channel.Failed}); err != nil || res != payment.ResultOK {
		t.Fatalf("refund failure: %v %v", res, err)
	}
	r.wait(id, func(o *payment.Order) bool { return !o.Active() })
	if _, err := r.engine.ImportStatementFile("bank", date, body, sig); err != nil {
		t.Fatal(err)
	}
	var rec *payment.StatementRecord
	if err := r.ledger.Read(func(v *storage.Reader) (err error) { rec, _, err = v.StatementRecord("bank", date, "RF-1"); return err }); err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Out != 999 {
		t.Fatalf("once settled, the refund of 999 is recorded: %+v", rec)
	}
	if res, _, err := r.engine.ResolveStatement("bank", date, "RF-1", payment.ResolveReverse, ""); err != nil || res != payment.ResultNotRefundable {
		t.Fatalf("REVERSE while the order's record it refunds is open: %v %v", res, err)
	}
	if rec != nil && rec.Out == 0 && rec.In == 0 {
		res, _, _ := r.engine.ResolveStatement("bank", date, "RF-1", payment.ResolveReverse, "")
		t.Fatalf("the channel refunded 999 that the books hold nowhere; its record (%v, %q) holds no money once settled and re-imported; reverse: %v",
			rec.Class, rec.Note, res)
	}
}

// TestStatementTxnOnTwoDaysBookedOnce: a long success that the channel lists on two days'
// statements (a re-listing, a corrected file under the next date) is booked on the first
// only: the second day's line is reported, with nothing booked again (before the fix 55
// collected once was booked 110).
func TestStatementTxnOnTwoDaysBookedOnce(t *testing.T) {
	r := newStubRig(t, &stubChannel{}, time.Date(2026, 11, 28, 0, 10, 0, 0, time.UTC))
	for _, date := range []string{"2026-11-26", "2026-11-27"} {
		body := stmtBody(date + ",TX-LONG,pay,P999999,,succeeded,55,CNY," + date + "T10:00:00Z\n")
		if _, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body)); err != nil {
			t.Fatal(err)
		}
	}
	if !r.suspenseIs(55) {
		t.Fatalf("one long txn of 55 listed on two days: suspense %d, want 55 (booked once)", r.suspense())
	}
}

// TestStatementAmountMismatchOrderNotMatched: an order that failed with AMOUNT_MISMATCH (the
// channel collected 990 of 1,000; the order is FAILED, the 990 in suspense on its record) is
// not "matched" by the channel's line of 990 succeeded: matched means the order's own status
// and amount are the line's. Like a second collection of a failed order, it is held: the
// order's amount_mismatch record holds the 990 and decides it, so the statement makes no
// second record of the same money.
func TestStatementAmountMismatchOrderNotMatched(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, &stubChannel{do: func(q channel.Request) channel.Result {
		return channel.Result{Status: channel.Succeeded, Txn: "T-" + q.OrderNo, Amount: q.Amount - 10}
	}}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	o := r.wait(id, func(o *payment.Order) bool { return o.State.Final() && !o.Active() })
	body := stmtBody(date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,990,CNY,2026-11-26T12:00:00Z\n")
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)) // the day is over (with the midnight tolerance)
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[payment.LineHeld] != 1 || rep.NewRecords != 0 || !rep.Clean() || len(rep.Held) != 1 || rep.Held[0].Order != id ||
		rep.Held[0].TheirAmount != 990 {
		t.Fatalf("order %v (%v, amount %d) and a line of succeeded 990: %v, %d records, held %+v, want one held line listed and no record",
			o.State, o.Result, o.Amount, rep.Counts, rep.NewRecords, rep.Held)
	}
}

// TestStatementLineWithNoRoomRecorded: an order whose 16 records are full cannot take a
// second collection the statement lists (ResultOverloaded), and never will (records are never
// freed): the line is counted not_applied, not pending, and decided: a status_mismatch record
// books its 10 into suspense (payment.NotApplied). The same file imported again, and the
// channel's callback of the txn (still refused: no room), book nothing more.
func TestStatementLineWithNoRoomRecorded(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	lines := []string{date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"}
	for i := range payment.ExceptionsMax {
		txn := fmt.Sprintf("DUP-%d", i)
		if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: txn,
			Status: channel.Succeeded, Amount: 10}); err != nil || res != payment.ResultOK {
			t.Fatalf("duplicate %d: %v %v", i, res, err)
		}
		lines = append(lines, fmt.Sprintf("%s,%s,pay,%s,,succeeded,10,CNY,2026-11-26T12:01:%02dZ\n", date, txn, payment.OrderNo(id), i))
	}
	r.wait(id, func(o *payment.Order) bool { return len(o.Exceptions) == payment.ExceptionsMax })
	body := stmtBody(append(lines, date+",DUP-X,pay,"+payment.OrderNo(id)+",,succeeded,10,CNY,2026-11-26T12:02:00Z\n")...)
	if !r.suspenseIs(10 * payment.ExceptionsMax) {
		t.Fatalf("suspense %d after %d duplicates of 10", r.suspense(), payment.ExceptionsMax)
	}
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC))
	before := r.suspense()
	for again := range 2 {
		rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
		if err != nil {
			t.Fatal(err)
		}
		var rec *payment.StatementRecord
		if err := r.ledger.Read(func(v *storage.Reader) (err error) {
			rec, _, err = v.StatementRecord("bank", date, "DUP-X")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if rep.NotApplied != 1 || rep.Applied != 0 || rep.Pending != 0 || rec == nil || rep.Again != (again == 1) ||
			rec.Class != payment.LineStatus || rec.In != 10 || rec.Out != 0 || rep.NewRecords != 1-again {
			t.Fatalf("import %d: applied %d, not applied %d, pending %d, new %d, record %+v", again, rep.Applied, rep.NotApplied,
				rep.Pending, rep.NewRecords, rec)
		}
		if !r.suspenseIs(before + 10) {
			t.Fatalf("import %d: suspense %d, want %d (the line's 10 booked once)", again, r.suspense(), before+10)
		}
	}
	if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: "DUP-X",
		Status: channel.Succeeded, Amount: 10}); err != nil || res != payment.ResultOverloaded {
		t.Fatalf("the callback of DUP-X: %v %v, want overloaded (the order never takes it)", res, err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := r.suspense(); got != before+10 {
		t.Fatalf("suspense %d, want %d: the line's money booked twice or not at all", got, before+10)
	}
}
