package payments

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// Limits of a statement import.
const (
	// StatementReportMax is the most lines a statement report lists per class (the counts
	// are complete).
	StatementReportMax = 1000
	// StatementScanMax is the most orders, newest first, an import reads looking for orders
	// the statement does not name that it should have a txn of (see ImportStatement).
	StatementScanMax = 1_000_000
)

// LineClass is what a statement line (or a txn missing from the statement) is to the ledger.
type LineClass uint8

const (
	// Matched: the order already held the line's txn with its status and amount.
	Matched LineClass = iota
	// Recorded: the line changed its order, and the order now holds it: an outcome the
	// order was waiting for, or an anomaly it recorded (duplicate payment, amount mismatch,
	// status conflict).
	Recorded
	// Long: the channel has the txn, the ledger has no such order (or the number is not one
	// of the ledger's); reported only: there is no order to record it on.
	Long
	// Refused: the order refused the line as it would the callback (another op, another
	// channel, an exception number it never used; ResultChannelMismatch), or the line's
	// currency or original is not the order's, or the order has no room for the record
	// (ResultOverloaded: import again later). Nothing changed.
	Refused
	// Differs: the order took the line as a callback and changed nothing, yet does not hold
	// it as the statement says (the same txn with another amount; a failure under another
	// txn; an anomaly not recorded for want of room). An operator looks.
	Differs
	// Short: the ledger holds a txn of the channel that moved money which the statement
	// does not have.
	Short
	lineClasses
)

var lineClassNames = [...]string{Matched: "matched", Recorded: "recorded", Long: "long", Refused: "refused",
	Differs: "differs", Short: "short"}

func (c LineClass) String() string {
	if c < lineClasses {
		return lineClassNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// StatementItem is one line of a statement report.
type StatementItem struct {
	Class   LineClass
	Line    int // the line in the file (the header is line 1); 0 for Short
	OrderNo string
	Txn     string
	Note    string
}

func (it StatementItem) String() string {
	at := "-"
	if it.Line > 0 {
		at = fmt.Sprintf("line %d", it.Line)
	}
	return fmt.Sprintf("%s %s %s txn %s: %s", it.Class, at, it.OrderNo, it.Txn, it.Note)
}

// StatementReport is what importing a statement found.
type StatementReport struct {
	Counts [lineClasses]int
	// Items lists at most StatementReportMax lines per class, in file order, then the short
	// txns.
	Items []StatementItem
	// ScanCut: the search for short txns among orders the statement does not name stopped
	// at StatementScanMax orders.
	ScanCut bool
}

// Clean reports whether every line matched and nothing is short.
func (r *StatementReport) Clean() bool {
	return r.Counts[Matched] == statementLines(r) && r.Counts[Short] == 0
}

func statementLines(r *StatementReport) int {
	n := 0
	for c := Matched; c < Short; c++ {
		n += r.Counts[c]
	}
	return n
}

func (r *StatementReport) add(it StatementItem) {
	r.Counts[it.Class]++
	if r.Counts[it.Class] <= StatementReportMax {
		r.Items = append(r.Items, it)
	}
}

// ImportStatement applies a channel's statement (one day's lines, as channel.ParseStatement
// reads them) line by line, in order, as the channel's callbacks: each line becomes the
// channel.Notice of its txn and goes through Notice, so the orders' state machine decides
// everything, and what a line changed is durable before the next is applied. A line whose
// currency, or original, is not its order's is refused and not applied. Each line is classed
// by reading its order before and after (see LineClass). Importing the same statement again
// changes nothing: every line then matches.
//
// Then the short txns: of the orders of this channel the lines name, and of the newest
// StatementScanMax orders of the channel updated on or after the statement's date (UTC), the
// txns that moved money and that the statement does not have: a SUCCEEDED order's txn, an
// exception's refund txn. A txn is expected on the statement when its request was sent on the
// statement's date (the order's SentAt, the refund's); the ledger does not keep when the
// channel completed it, so a request sent just before midnight and completed after it is
// reported short on its sending day's statement (and its line on the next day is matched).
//
// An error (the engine stopped or overloaded, storage) ends the import: the lines before it
// are applied and durable, and importing the statement again is safe.
func (e *Engine) ImportStatement(name string, lines []channel.StatementLine) (StatementReport, error) {
	var r StatementReport
	if e.gateways[name] == nil {
		return r, fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	if len(lines) > channel.StatementLinesMax {
		return r, fmt.Errorf("payments: a statement of %d lines, at most %d", len(lines), channel.StatementLinesMax)
	}
	for i := range lines {
		if lines[i].Date != lines[0].Date {
			return r, fmt.Errorf("payments: statement lines of %s and %s", lines[0].Date, lines[i].Date)
		}
	}
	orders := map[uint64]*payment.Order{} // the latest read of each order the lines name
	inStatement := make(map[string]bool, len(lines))
	for i := range lines {
		inStatement[lines[i].Txn] = true
	}
	for i := range lines {
		it, err := e.importLine(name, &lines[i], orders)
		if err != nil {
			return r, fmt.Errorf("payments: statement line %d: %w", i+2, err)
		}
		it.Line = i + 2
		r.add(it)
	}
	if len(lines) == 0 {
		return r, nil
	}
	day, err := time.Parse(time.DateOnly, lines[0].Date)
	if err != nil {
		return r, fmt.Errorf("payments: statement date: %w", err)
	}
	from := uint64(day.UnixNano())
	to := from + uint64(24*time.Hour)
	onDay := func(ns uint64) bool { return ns >= from && ns < to }
	short := func(o *payment.Order) {
		if o.Channel != name {
			return
		}
		if o.State == payment.Succeeded && o.Txn != "" && o.Paid > 0 && onDay(o.SentAt) && !inStatement[o.Txn] {
			r.add(StatementItem{Class: Short, OrderNo: payment.OrderNo(o.ID), Txn: o.Txn,
				Note: fmt.Sprintf("the order succeeded: the channel moved %d, not on the statement", o.Paid)})
		}
		for k := range o.Exceptions {
			x := &o.Exceptions[k]
			if x.Refund != "" && onDay(x.SentAt) && !inStatement[x.Refund] {
				r.add(StatementItem{Class: Short, OrderNo: payment.ExceptionNo(o.ID, k, x.Attempt), Txn: x.Refund,
					Note: fmt.Sprintf("the %v record was refunded %d, not on the statement", x.Kind, x.Amount)})
			}
		}
	}
	for i := range lines {
		if id, _, err := payment.ParseOrderNo(lines[i].OrderNo); err == nil && orders[id] != nil {
			short(orders[id])
			orders[id] = nil // once
		}
	}
	scanned := 0
	err = e.read(func(v *storage.Reader) error {
		return v.OrdersNewestFirst(func(o *payment.Order) bool {
			if scanned == StatementScanMax {
				r.ScanCut = true
				return false
			}
			scanned++
			if _, named := orders[o.ID]; !named && o.Updated >= from {
				short(o)
			}
			return true
		})
	})
	return r, err
}

// importLine applies one line and classes it; orders holds the latest read of the orders
// named so far.
func (e *Engine) importLine(name string, l *channel.StatementLine, orders map[uint64]*payment.Order) (StatementItem, error) {
	it := StatementItem{OrderNo: l.OrderNo, Txn: l.Txn}
	id, k, err := payment.ParseOrderNo(l.OrderNo)
	if err != nil {
		it.Class, it.Note = Long, "no such order (not an order number of the ledger's)"
		return it, nil
	}
	before := orders[id]
	if before == nil {
		if before, err = e.order(id); err != nil {
			return it, err
		}
	}
	if before == nil {
		it.Class, it.Note = Long, "no such order"
		return it, nil
	}
	orders[id] = before
	if c := e.cfg.Setup.Currency(before.Ledger); before.Channel == name && c != l.Currency {
		it.Class, it.Note = Refused, fmt.Sprintf("currency %s, the order's is %s; not applied", l.Currency, c)
		return it, nil
	}
	if want := originalOf(before, k); before.Channel == name && l.Original != want {
		it.Class, it.Note = Refused, fmt.Sprintf("original %q, the order's is %q; not applied", l.Original, want)
		return it, nil
	}
	knew := knows(before, l, k)
	res, err := e.Notice(name, l.Notice())
	if err != nil {
		return it, err
	}
	switch res {
	case payment.ResultOK:
	case payment.ResultOverloaded:
		it.Class, it.Note = Refused, "the order has no room for another exception record; not applied, import again later"
		return it, nil
	case payment.ResultOrderNotFound:
		it.Class, it.Note = Long, "no such order"
		return it, nil
	default:
		it.Class, it.Note = Refused, fmt.Sprintf("the order refuses it (%v): a %v order of channel %s", res, before.Form, before.Channel)
		return it, nil
	}
	after, err := e.order(id)
	if err != nil {
		return it, err
	}
	if after == nil {
		return it, fmt.Errorf("payments: order %d vanished", id)
	}
	orders[id] = after
	switch {
	case knew:
		it.Class, it.Note = Matched, "known"
	case knows(after, l, k):
		it.Class, it.Note = Recorded, changes(before, after)
	default:
		it.Class = Differs
		it.Note = fmt.Sprintf("the order (%v, txn %q, paid %d) does not hold a %v of %d", after.State, after.Txn, after.Paid, l.Status, l.Amount)
		if after.Dropped != before.Dropped {
			it.Note += "; an anomaly record was dropped for want of room"
		}
	}
	return it, nil
}

// order reads one order, durable; nil when there is none.
func (e *Engine) order(id uint64) (*payment.Order, error) {
	got, err := e.Orders([]uint64{id})
	if err != nil {
		return nil, err
	}
	return got[0], nil
}

// originalOf is the original a line about o's request (k < 0) or its exception k's refund
// carries.
func originalOf(o *payment.Order, k int) string {
	switch {
	case k >= 0:
		return payment.OrderNo(o.ID)
	case o.Form == payment.Refund:
		return payment.OrderNo(o.Original)
	}
	return ""
}

// knows reports whether o holds line l (about its request, k < 0, or its exception k's
// refund) with its status and amount.
func knows(o *payment.Order, l *channel.StatementLine, k int) bool {
	for i := range o.Exceptions {
		if x := &o.Exceptions[i]; x.Txn == l.Txn && x.Amount == l.Amount {
			return true // an anomaly recorded (a duplicate, a mismatch, a conflict)
		}
	}
	succeeded := l.Status == channel.Succeeded
	if k < 0 {
		if o.Txn != l.Txn {
			return false
		}
		paid := o.Outcome == payment.OutcomeSucceeded || o.Outcome == payment.OutcomeMismatch
		if succeeded {
			return paid && o.Paid == l.Amount
		}
		return o.Outcome == payment.OutcomeFailed
	}
	if k >= len(o.Exceptions) {
		return false
	}
	x := &o.Exceptions[k]
	current := l.OrderNo == payment.ExceptionNo(o.ID, k, x.Attempt)
	if succeeded {
		return current && x.Refund == l.Txn && x.Amount == l.Amount
	}
	// A failed attempt: the order holds no txn of it; it agrees when the order made the
	// attempt and it is not the one awaited nor the one that refunded.
	n := attemptOf(l.OrderNo)
	return n > 0 && n <= x.Attempt && !(current && (x.Step == payment.ExcRefunding || x.Refund != ""))
}

// attemptOf is the attempt of an exception refund's number (payment.ExceptionNo); 0 if none.
func attemptOf(orderNo string) uint32 {
	n, err := strconv.ParseUint(orderNo[strings.LastIndexByte(orderNo, '-')+1:], 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// changes describes what a line changed on its order.
func changes(before, after *payment.Order) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state %v", after.State)
	if after.State != before.State {
		fmt.Fprintf(&b, " (was %v)", before.State)
	}
	if after.Txn != before.Txn {
		fmt.Fprintf(&b, ", txn %s", after.Txn)
	}
	var kinds []string
	if len(after.Exceptions) > len(before.Exceptions) {
		for _, x := range after.Exceptions[len(before.Exceptions):] {
			kinds = append(kinds, x.Kind.String())
		}
		fmt.Fprintf(&b, ", new exception records: %s", strings.Join(kinds, ", "))
	}
	for i := range min(len(before.Exceptions), len(after.Exceptions)) {
		if x, y := &before.Exceptions[i], &after.Exceptions[i]; x.Step != y.Step || x.Refund != y.Refund {
			fmt.Fprintf(&b, ", exception %d (%v) %v", i, y.Kind, y.Step)
		}
	}
	return b.String()
}
