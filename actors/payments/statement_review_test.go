package payments

import (
	"fmt"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

func (r *stubRig) openRecords() []*payment.StatementRecord {
	r.t.Helper()
	var out []*payment.StatementRecord
	if err := r.ledger.Read(func(v *storage.Reader) error {
		return v.StatementRecords(true, "", "", "", func(x *payment.StatementRecord) bool {
			out = append(out, x)
			return true
		})
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// TestStatementCorrectedShortConvertedToLineDifference (re-review M1): the day's first
// statement lacks a refund of 1,000 the books hold: short, 1,000 booked into suspense. The
// channel's corrected statement of the same day lists the refund with a difference of its
// own, whose record would have the short record's key (channel, day, txn): the short record
// becomes that difference (StatementRecord.Convert), booking only the delta. Refunded 1,200:
// the 1,000 is booked back, reversible_out 200, suspense 0. Failed: the channel still holds
// the 1,000: booked_in 1,000 stays in suspense, nothing posted. A second import changes
// nothing.
func TestStatementCorrectedShortConvertedToLineDifference(t *testing.T) {
	// The corrected file's refund line: 1,200 refunded (books over by 200: reversible_out
	// 200), or the refund failed (the channel still holds the 1,000: booked_in 1,000, which
	// the short record held correctly until the corrected file cleared it).
	for _, c := range []struct {
		line    string
		in, out uint64
	}{{"succeeded,1200", 0, 200}, {"failed,0", 1000, 0}} {
		t.Run(c.line, func(t *testing.T) { correctedShort(t, c.line, c.in, c.out) })
	}
}

func correctedShort(t *testing.T, refundLine string, wantIn, wantOut uint64) {
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
	pay := date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"
	dup := date + ",DUP-1,pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:10:00Z\n"
	refund := date + ",RF-1,refund," + refundNo + ",DUP-1," + refundLine + ",CNY,2026-11-26T12:29:59Z\n"
	first := stmtBody(pay, dup)
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC))
	if _, err := r.engine.ImportStatementFile("bank", date, first, channel.SignStatement(secret, date, first)); err != nil {
		t.Fatal(err)
	}
	if !r.suspenseIs(1000) {
		t.Fatalf("short refund: suspense %d, want 1000", r.suspense())
	}
	full := stmtBody(pay, dup, refund)
	for i := range 2 {
		rep, err := r.engine.ImportStatementFile("bank", date, full, channel.SignStatement(secret, date, full))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("corrected import %d: counts %v cleared %d new records %d", i, rep.Counts, rep.Cleared, rep.NewRecords)
	}
	time.Sleep(200 * time.Millisecond)
	var held bool
	for _, x := range r.openRecords() {
		t.Logf("record %s %s %v %v in %d out %d: %s", x.Day, x.Txn, x.Class, x.Step, x.In, x.Out, x.Note)
		if x.Step != payment.ExcResolved && x.In == wantIn && x.Out == wantOut {
			held = true
		}
	}
	if !held {
		t.Fatalf("the channel's corrected line %q for RF-1 (the books: refunded 1000): no open record with booked_in %d / reversible_out %d (suspense %d)",
			refundLine, wantIn, wantOut, r.suspense())
	}
	if !r.suspenseIs(int64(wantIn)) {
		t.Fatalf("the channel's corrected line %q: suspense %d, want %d (what the line's difference books)", refundLine, r.suspense(), wantIn)
	}
}

// TestStatementFullOrderLineRecordedAfterRecordsResolved (re-review M2): an order's 16
// exception records are never removed, so an order that filled them can never take another
// line, even once every record is refunded and resolved. The channel's statement lists a 17th
// collection (DUP-X, 10) under the order: not applied (no room), and decided at once: a
// status_mismatch record books the 10 into suspense; re-imports and the channel's callback
// (refused) book nothing more.
func TestStatementFullOrderLineRecordedAfterRecordsResolved(t *testing.T) {
	const date = "2026-11-26"
	r := newStubRig(t, &stubChannel{}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
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
	o := r.wait(id, func(o *payment.Order) bool {
		if len(o.Exceptions) != payment.ExceptionsMax || o.Active() {
			return false
		}
		for _, x := range o.Exceptions {
			if x.Step != payment.ExcResolved {
				return false
			}
		}
		return true
	})
	for k, x := range o.Exceptions {
		lines = append(lines, fmt.Sprintf("%s,%s,refund,%s,%s,succeeded,10,CNY,2026-11-26T12:03:%02dZ\n", date, x.Refund,
			payment.ExceptionNo(id, k, x.Attempt), payment.OrderNo(id), k))
	}
	body := stmtBody(append(lines, date+",DUP-X,pay,"+payment.OrderNo(id)+",,succeeded,10,CNY,2026-11-26T12:05:00Z\n")...)
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC))
	for i := range 3 {
		rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("import %d: %v applied %d not applied %d pending %d new %d", i, rep.Counts, rep.Applied, rep.NotApplied, rep.Pending, rep.NewRecords)
	}
	res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: "DUP-X",
		Status: channel.Succeeded, Amount: 10})
	t.Logf("the channel's callback of DUP-X, every record resolved: %v %v", res, err)
	var rec *payment.StatementRecord
	if err := r.ledger.Read(func(v *storage.Reader) (err error) {
		rec, _, err = v.StatementRecord("bank", date, "DUP-X")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if rec == nil {
		t.Fatalf("the channel collected 10 under DUP-X for order %d, whose records are all resolved and never freed: no record, suspense %d (the money is in no record, booked nowhere, after any number of imports)",
			id, r.suspense())
	}
	if rec.Class != payment.LineStatus || rec.In != 10 || rec.Step != payment.ExcOpen || res != payment.ResultOverloaded || !r.suspenseIs(10) {
		t.Fatalf("record %+v, callback %v, suspense %d: want an open status_mismatch booking 10 once, the callback refused", rec, res, r.suspense())
	}
}
