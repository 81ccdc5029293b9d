package payments

import (
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
)

// A line in flight on the 26th is marked seen there. Its refund settles on the 27th (RefundAt
// on the 27th), and the 27th's statement (which does not list it: the channel listed it on
// the 26th) is imported before the 26th is imported again: the refund is not short on the
// 27th (found in review: with in-flight lines left unseen, its full amount was booked into
// suspense though the channel had listed it).
func TestStatementInFlightLineIsNotShortTheNextDay(t *testing.T) {
	const date, next = "2026-11-26", "2026-11-27"
	r := newStubRig(t, refundsHeld(), time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	id := r.recharge("r1", 1000)
	r.wait(id, func(o *payment.Order) bool { return o.State == payment.Succeeded && !o.Active() })
	o := r.duplicate(id, "DUP-1", 1000)
	refundNo := payment.ExceptionNo(id, 0, o.Exceptions[0].Attempt)
	pay := date + ",T-" + payment.OrderNo(id) + ",pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:00Z\n"
	dup := date + ",DUP-1,pay," + payment.OrderNo(id) + ",,succeeded,1000,CNY,2026-11-26T12:00:01Z\n"
	body := stmtBody(pay, dup, date+",RF-1,refund,"+refundNo+",DUP-1,succeeded,999,CNY,2026-11-26T12:00:02Z\n")
	r.set(time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC))
	rep, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body))
	if err != nil || rep.Pending != 1 {
		t.Fatalf("a line in flight: %v %+v", err, rep)
	}
	s0 := r.suspense()
	r.set(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if res, err := r.engine.Notice("bank", channel.Notice{Op: channel.Refund, OrderNo: refundNo, Txn: "RF-1",
		Status: channel.Succeeded, Amount: 1000}); err != nil || res != payment.ResultOK {
		t.Fatalf("refund success: %v %v", res, err)
	}
	o = r.wait(id, func(o *payment.Order) bool { return !o.Active() && o.Exceptions[0].Step == payment.ExcResolved })
	t.Logf("refund at %s, suspense %d -> %d", payment.DateOf(o.Exceptions[0].RefundAt), s0, r.suspense())
	s1 := r.suspense()
	r.set(time.Date(2026, 11, 28, 0, 10, 0, 0, time.UTC))
	later := stmtBody(next + ",OTHER,pay,X-1,,failed,0,CNY,2026-11-27T08:00:00Z\n")
	rep, err = r.engine.ImportStatementFile("bank", next, later, channel.SignStatement(secret, next, later))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, x := range r.openRecords() {
		t.Logf("record %s %s %v in=%d out=%d step=%v note=%q", x.Day, x.Txn, x.Class, x.In, x.Out, x.Step, x.Note)
	}
	if rep.Counts[payment.LineShort] != 0 || r.suspense() != s1 {
		// Does a re-import of the 26th heal it?
		if _, err := r.engine.ImportStatementFile("bank", date, body, channel.SignStatement(secret, date, body)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		for _, x := range r.openRecords() {
			t.Logf("after re-import: record %s %s %v in=%d out=%d step=%v", x.Day, x.Txn, x.Class, x.In, x.Out, x.Step)
		}
		t.Logf("after re-import of the 26th: suspense %d", r.suspense())
		t.Fatalf("the 27th's import found %d short (suspense %d -> %d): the refund RF-1 the channel listed on the 26th is booked as short",
			rep.Counts[payment.LineShort], s1, r.suspense())
	}
}
