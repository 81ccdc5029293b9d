package payments

import (
	"context"
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

// reviewClient decides requests by a function of the request (nil: succeeded at once,
// txn "T-" + order number); queries answer Processing (the channel still has it).
type reviewClient struct {
	do func(r channel.Request) channel.Result
}

func (c *reviewClient) Do(_ context.Context, r channel.Request) (channel.Result, error) {
	if c.do != nil {
		return c.do(r), nil
	}
	return channel.Result{Status: channel.Succeeded, Txn: "T-" + r.OrderNo, Amount: r.Amount}, nil
}

func (c *reviewClient) Query(context.Context, channel.Op, string) (channel.Result, error) {
	return channel.Result{Status: channel.Processing}, nil
}

// reviewRig is an engine on a stub channel "bank" with a settable clock.
type reviewRig struct {
	t      *testing.T
	engine *Engine
	ledger *actors.Ledger
	clock  atomic.Uint64
}

func newReviewRig(t *testing.T, c *reviewClient, at time.Time) *reviewRig {
	r := &reviewRig{t: t}
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
	r.engine, err = Start(store, r.ledger, Config{Setup: setup, Clients: map[string]channel.Client{"bank": c},
		Secrets: map[string][]byte{"bank": secret}, Now: r.clock.Load,
		Gateway: gateway.Config{Timeout: time.Second, RateLimit: 1e6, Burst: 1000, MaxInFlight: 32},
		Tick:    20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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

func (r *reviewRig) set(at time.Time) { r.clock.Store(uint64(at.UnixNano())) }

// wait polls order id until cond holds.
func (r *reviewRig) wait(id uint64, cond func(o *payment.Order) bool) *payment.Order {
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

func (r *reviewRig) recharge(key string, amount uint64) uint64 {
	r.t.Helper()
	reps, err := r.engine.Create([]payment.Request{{Key: key, BizID: "biz-" + key, Form: payment.Recharge, Ledger: 1,
		Amount: amount, To: alice, Channel: "bank", ChannelAccount: "card-1"}})
	if err != nil || reps[0].Result != payment.ResultOK {
		r.t.Fatalf("create: %v %v", reps, err)
	}
	return reps[0].Order.ID
}

func (r *reviewRig) balance(id uint64) int64 {
	r.t.Helper()
	var a ledger.Account
	if err := r.ledger.Read(func(v *storage.Reader) (err error) { a, _, err = v.Account(id); return err }); err != nil {
		r.t.Fatal(err)
	}
	return int64(a.CreditsPosted.Lo) - int64(a.DebitsPosted.Lo)
}

func (r *reviewRig) suspense() int64 {
	return r.balance(r.engine.cfg.Setup.PlatformAccount(1, 2005, ""))
}

// settledSuspense waits until the suspense balance holds still at want (hot accounts lag).
func (r *reviewRig) suspenseIs(want int64) bool {
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
func refundsHeld() *reviewClient {
	return &reviewClient{do: func(q channel.Request) channel.Result {
		if q.Op == channel.Refund {
			return channel.Result{Status: channel.Processing}
		}
		return channel.Result{Status: channel.Succeeded, Txn: "T-" + q.OrderNo, Amount: q.Amount}
	}}
}

// duplicate makes order id's channel collect again under txn dup and waits until the
// record's refund is with the channel.
func (r *reviewRig) duplicate(id uint64, dup string, amount uint64) *payment.Order {
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

// TestReviewReverseShortDuplicateWhileRefunding: a second collection (a duplicate payment,
// in suspense, its refund with the channel) is missing from the day's statement, so it is
// "short" and reversible. The operator reverses it while the order's own record is still
// refunding it; then the channel confirms the refund and the order takes the same money out
// of suspense a second time. Suspense ends negative: the same 1,000 left the books twice.
// ResolveStatement must refuse REVERSE while an order's record holds the txn's money (or
// the short check must not count txns an active record owns).
func TestReviewReverseShortDuplicateWhileRefunding(t *testing.T) {
	const date = "2026-11-26"
	r := newReviewRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	o := r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o = r.duplicate(id, "DUP-1", 1000)
	if !r.suspenseIs(1000) {
		t.Fatalf("suspense %d after the duplicate, want 1000", r.suspense())
	}
	// The statement has the order's own txn, not the duplicate's (the day is otherwise done).
	body := stmtBody(date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n")
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, body))
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
	t.Logf("reverse while the order's record %d is %v: %v", 0, o.Exceptions[0].Step, res)
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
}

// TestReviewEmptyStatementReplay: a statement with no lines is the same bytes whatever its
// day, so its signature (the channel's, for a quiet day) verifies as any day's statement. The
// date check only looks at lines. Imported as the statement of a busy day, every txn of the
// day is "short": a refund the channel made is booked back into suspense at once
// (suspense_in), with nothing unauthenticated-for-that-day behind it. The signature must bind
// the date (sign date||body, or a trailer naming the date and line count).
func TestReviewEmptyStatementReplay(t *testing.T) {
	r := newReviewRig(t, &reviewClient{}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
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
	sig := channel.SignStatement(secret, empty)
	rep, err := r.engine.ImportStatementFile("bank", "2026-11-26", empty, sig)
	if err == nil {
		t.Logf("2020-01-01's empty statement imported as 2026-11-26's: %d short, %d new records", rep.Counts[payment.LineShort], rep.NewRecords)
	}
	if err == nil && rep.Counts[payment.LineShort] > 0 {
		time.Sleep(100 * time.Millisecond)
		t.Fatalf("a statement signed for another day was imported as 2026-11-26's: %d short txns, suspense now %d (booked from it)",
			rep.Counts[payment.LineShort], r.suspense())
	}
}

// TestReviewShortNeverRevisited: the day's statement is fetched before the channel listed a
// refund (the fake renders "the day as it stands"; a txn completed while the fetch ran; or a
// clock more than 5 min apart near midnight): the refund is short and its money booked back
// into suspense at once. The channel's next (complete) statement of the day has the refund:
// it matches, but the short record stays open and its booking stays: suspense holds 1,000
// that the channel really refunded. A short record must be re-decided (unbooked, closed) when
// a statement later has its txn, or a short refund/payout must not be booked before the day
// is final.
func TestReviewShortNeverRevisited(t *testing.T) {
	const date = "2026-11-26"
	r := newReviewRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
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
	first := stmtBody(pay, dup) // fetched before the channel listed the refund
	rep, err := r.engine.ImportStatementFile("bank", date, first, channel.SignStatement(secret, first))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first: %+v", rep.Counts)
	full := stmtBody(pay, dup, refund)
	rep, err = r.engine.ImportStatementFile("bank", date, full, channel.SignStatement(secret, full))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full: %+v", rep.Counts)
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

// TestReviewStatementSettlesInAnotherCurrency: the statement names each line's currency; a
// callback does not. An order awaiting its outcome (ledger 1, CNY) is settled by a signed
// line of the same number in USD: the line is applied as its callback (applyNews does not
// look at the currency) and the user is credited 1,000 CNY for 1,000 US cents. MatchLine then
// reports amount_mismatch with "nothing booked", after the fact.
func TestReviewStatementSettlesInAnotherCurrency(t *testing.T) {
	const date = "2026-11-26"
	r := newReviewRig(t, &reviewClient{do: func(channel.Request) channel.Result {
		return channel.Result{Status: channel.Processing}
	}}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Processing })
	body := stmtBody(date + ",T-X,pay," + payment.OrderNo(id) + ",,succeeded,1000,USD,2026-11-26T12:00:00Z\n")
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, body))
	if err != nil {
		t.Fatal(err)
	}
	os, _ := r.engine.Orders([]uint64{id})
	if rep.Applied > 0 || os[0].State == payment.Succeeded {
		t.Fatalf("a USD line settled a CNY order: applied %d, order %v, alice %d; report %+v", rep.Applied, os[0].State,
			r.balance(alice), rep.Counts)
	}
}

// TestReviewInFlightRecordIsFinal: a line about a request still in flight is classed a
// difference "nothing booked, import again once it settles", but its record is written at
// once (In and Out 0) and a record is written once per (channel, day, txn): importing again
// once it settled finds the record and writes nothing. Here the channel's statement has a
// refund of 999 under the refund request of a duplicate's record (1,000, still refunding);
// the record's refund then fails, so the 999 the channel paid out is held by nothing in the
// books. The statement record of RF-1 says so with Out 0: REVERSE is NOT_REFUNDABLE forever,
// and no import can fix it.
func TestReviewInFlightRecordIsFinal(t *testing.T) {
	const date = "2026-11-26"
	r := newReviewRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o := r.duplicate(id, "DUP-1", 1000)
	refundNo := payment.ExceptionNo(id, 0, o.Exceptions[0].Attempt)
	pay := date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"
	dup := date + ",DUP-1,pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:01Z\n"
	refund := date + ",RF-1,refund," + refundNo + ",DUP-1,succeeded,999,CNY,2026-11-26T12:00:02Z\n"
	body := stmtBody(pay, dup, refund)
	sig := channel.SignStatement(secret, body)
	rep, err := r.engine.ImportStatementFile("bank", date, body, sig)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("while refunding: %+v new records %d", rep.Counts, rep.NewRecords)
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
	if rec != nil && rec.Out == 0 && rec.In == 0 {
		res, _, _ := r.engine.ResolveStatement("bank", date, "RF-1", payment.ResolveReverse, "")
		t.Fatalf("the channel refunded 999 that the books hold nowhere; its record (%v, %q) holds no money once settled and re-imported; reverse: %v",
			rec.Class, rec.Note, res)
	}
}

// TestReviewLongTxnOnTwoDays: the seen index (Q) knows which day's statement had a txn, but
// lines are not checked against it: a long success that the channel lists on two days'
// statements (a channel's re-listing, a corrected file under the next date) gets a record,
// and a suspense_in, per day: 55 collected once is booked 110.
func TestReviewLongTxnOnTwoDays(t *testing.T) {
	r := newReviewRig(t, &reviewClient{}, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	for _, date := range []string{"2026-11-26", "2026-11-27"} {
		body := stmtBody(date + ",TX-LONG,pay,P999999,,succeeded,55,CNY," + date + "T10:00:00Z\n")
		if _, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, body)); err != nil {
			t.Fatal(err)
		}
	}
	if r.suspenseIs(110) {
		t.Fatalf("one long txn of 55 listed on two days is booked to suspense twice: %d", r.suspense())
	}
}

// TestReviewMismatchIsMatched: an order that failed with AMOUNT_MISMATCH (the channel
// collected 990 of 1,000; the order is FAILED, the 990 in suspense on its record) is
// "matched" by the channel's line of 990 succeeded, though the order's own status (FAILED)
// and amount (1,000) both differ from the line's; a duplicate collection of a failed order
// is status_mismatch. The promise: matched means the order's own status and amount equal the
// line's.
func TestReviewMismatchIsMatched(t *testing.T) {
	const date = "2026-11-26"
	r := newReviewRig(t, &reviewClient{do: func(q channel.Request) channel.Result {
		return channel.Result{Status: channel.Succeeded, Txn: "T-" + q.OrderNo, Amount: q.Amount - 10}
	}}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	o := r.wait(id, func(o *payment.Order) bool { return o.State.Final() && !o.Active() })
	body := stmtBody(date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,990,CNY,2026-11-26T12:00:00Z\n")
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[payment.LineMatched] == 1 {
		t.Fatalf("order %v (%v, amount %d) is matched by a line of succeeded 990", o.State, o.Result, o.Amount)
	}
}
