package payment

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// Channel reconciliation (对账): a channel's signed daily statement against the books. The
// matching is pure; the host verifies the statement, reads the orders and the records, and
// persists what this file decides. docs/PAYMENTS.md, "Channel statements", is the contract.
//
// Our side's day: a txn belongs to the UTC date on which the ledger recorded it (ChannelTxn.At:
// when the order took the channel's outcome, when an exception record was opened, when a
// record's refund was taken). The channel's day is the date of its completed_at. The two differ
// near midnight (the channel completes at 23:59:59.9, the callback arrives at 00:00:00.1), so a
// txn of ours is looked for on every statement imported, and is short only once the statements
// of each day within StatementTolerance of when we recorded it are imported and none has it.

// StatementTolerance is how far from midnight UTC a txn we recorded may be on the other day's
// statement.
const StatementTolerance = uint64(5 * time.Minute)

// DayNanos is the length of a statement's day.
const DayNanos = uint64(24 * time.Hour)

// ChannelTxn is a channel transaction as the books recorded it: the order's own outcome, a
// second collection recorded as a duplicate payment, or the refund of an exception record.
// Status conflicts are not among them: they record what the channel said and booked nothing.
type ChannelTxn struct {
	Txn     string
	OrderNo string // the channel request it answered
	Order   uint64
	Op      channel.Op
	Status  channel.Status // Succeeded or Failed
	Amount  uint64         // what the books hold the channel moved (0 for a failure)
	At      uint64         // when the ledger recorded it (ns since the epoch); 0: before this was kept
	What    string
	// Own: the order's own outcome (not a record's collection or refund).
	Own bool
	// Holder names the exception record of the order that holds this money in suspense and
	// may still move it (a duplicate collection or an amount mismatch, not resolved: it
	// refunds it, or an operator does); empty: none. What a record holds, the record decides
	// first: a statement record's REVERSE is refused until it is resolved.
	Holder string
}

// ChannelTxns are the channel transactions order o recorded, its own first, then its records'
// in record order. Each txn appears once.
func ChannelTxns(o *Order) []ChannelTxn {
	var out []ChannelTxn
	if o.Txn != "" && o.card() != nil {
		t := ChannelTxn{Txn: o.Txn, OrderNo: OrderNo(o.ID), Order: o.ID, Op: o.op(), Status: channel.Failed, At: o.TxnAt,
			What: "the order's outcome", Own: true}
		if o.Outcome == OutcomeSucceeded || o.Outcome == OutcomeMismatch {
			t.Status, t.Amount = channel.Succeeded, o.Paid
		}
		out = append(out, t)
	}
	for k := range o.Exceptions {
		x := &o.Exceptions[k]
		switch {
		case x.Kind != DuplicatePayment || x.Txn == "":
		case x.Txn == o.Txn && len(out) > 0 && out[0].Status == channel.Failed:
			// The channel collected under the txn of a failure: the record holds the money.
			out[0].Status, out[0].Amount, out[0].What = channel.Succeeded, x.Amount, fmt.Sprintf("exception %d (%v)", k, x.Kind)
			out[0].Own = false
		case x.Txn != o.Txn:
			out = append(out, ChannelTxn{Txn: x.Txn, OrderNo: OrderNo(o.ID), Order: o.ID, Op: channel.Pay,
				Status: channel.Succeeded, Amount: x.Amount, At: x.Created, What: fmt.Sprintf("exception %d (%v)", k, x.Kind)})
		}
		if x.Booked() && x.Txn != "" && x.Step != ExcResolved {
			for i := range out {
				if out[i].Txn == x.Txn && out[i].OrderNo == OrderNo(o.ID) {
					out[i].Holder = fmt.Sprintf("exception %d (%v, %v)", k, x.Kind, x.Step)
				}
			}
		}
		if x.Refund != "" {
			out = append(out, ChannelTxn{Txn: x.Refund, OrderNo: ExceptionNo(o.ID, k, x.Attempt), Order: o.ID,
				Op: channel.Refund, Status: channel.Succeeded, Amount: x.Amount, At: x.RefundAt,
				What: fmt.Sprintf("the refund of exception %d (%v)", k, x.Kind)})
		}
	}
	return out
}

// TxnCount is how many channel transactions the order recorded (len(ChannelTxns(o)) without
// building them): it only grows, so a host that sees it grow knows the order recorded one.
func TxnCount(o *Order) int {
	n := 0
	if o.Txn != "" && o.card() != nil {
		n++
	}
	for k := range o.Exceptions {
		x := &o.Exceptions[k]
		if x.Kind == DuplicatePayment && x.Txn != "" && x.Txn != o.Txn {
			n++
		}
		if x.Refund != "" {
			n++
		}
	}
	return n
}

// StatementNews reports whether the order would take line as news, as its callback: an outcome
// it awaits (an UNKNOWN or PROCESSING request, an exception's refund), a second collection to
// record as a duplicate payment, a refund it had given up on. The host applies such a line as
// the channel's notice: the statement is signed by the channel, so it is the channel's word as
// much as a callback or a query's answer, and the order's own machine books what it means,
// so a callback of the same txn later books nothing twice. A line that would only open a
// status conflict, or change nothing, is not news: the reconciliation reports it.
//
// A line in a currency other than the order's ledger's is never news: a callback names no
// currency, so applied as one it would settle the order for an amount of another currency.
// A line the order would take as news but has no room for (ResultOverloaded: no record left
// to hold the money) is news: the host's notice answers ResultOverloaded and the line is
// counted not applied (NotApplied: a Full order never takes it, so its difference is recorded
// and booked by the statement record; otherwise a later import tries it again).
func (o *Order) StatementNews(s *Setup, l *channel.StatementLine, now uint64) bool {
	if l.Currency != s.Currency(o.Ledger) {
		return false
	}
	c := o.Clone()
	n := l.Notice()
	n.BizID = o.BizID
	v := c.Version
	_, res := c.OnNotice(s, &n, now)
	if res == ResultOverloaded {
		return true
	}
	if res != ResultOK || c.Version == v {
		return false
	}
	for _, x := range c.Exceptions[len(o.Exceptions):] {
		if x.Booked() {
			return true // money the order books (and owns) from now on
		}
	}
	return TxnCount(c) > TxnCount(o) || c.Stage != o.Stage
}

// LineClass is what a statement line is to the books.
type LineClass uint8

const (
	// LineMatched: the books hold the line's txn with its status and amount, for the request
	// the line names (or a failure of a request whose order failed, or a refund attempt that
	// the books hold for failed: nothing moved on either side).
	LineMatched LineClass = 1 + iota
	// LineDuplicate: a second collection the books hold as a duplicate payment of a
	// succeeded order, with its amount: in suspense and refunded by the exception record.
	LineDuplicate
	// LineLong: no request of ours under the line's order number (no such order, another
	// channel's, another op).
	LineLong
	// LineAmount: the books hold the txn with another amount (or another currency).
	LineAmount
	// LineStatus: the books hold the request with another status: the order failed and the
	// channel says the txn succeeded (or collected again), the order succeeded and the
	// channel reports a failure, the books do not hold a money txn the channel made for it.
	LineStatus
	// LineShort is not a line: a txn that moved money in the books and is on no statement.
	LineShort
	// LineHeld: a collection for an order that did not succeed (the channel collected another
	// amount than asked, or collected again), which the books hold with its amount in
	// suspense under the order's exception record: the line agrees with the books, and the
	// exception record (found when the callback came) is where the anomaly is decided, so it
	// is not a difference of the statement (no second record of the same money).
	LineHeld
	lineClasses
)

var lineClassNames = [...]string{LineMatched: "matched", LineDuplicate: "duplicate", LineLong: "long",
	LineAmount: "amount_mismatch", LineStatus: "status_mismatch", LineShort: "short", LineHeld: "held"}

func (c LineClass) String() string {
	if c < lineClasses && lineClassNames[c] != "" {
		return lineClassNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Difference reports whether the class is a difference (it gets a record).
func (c LineClass) Difference() bool {
	return c == LineLong || c == LineAmount || c == LineStatus || c == LineShort
}

// Match is what one line (or one short txn) is to the books.
type Match struct {
	Class   LineClass
	Txn     string
	OrderNo string
	Order   uint64 // 0: no order
	Op      channel.Op
	Ledger  uint32 // 0: none known (an unknown currency)
	// Theirs and Ours: the status and amount the statement and the books give the txn (a
	// status of 0: that side has no such txn).
	TheirStatus, OurStatus channel.Status
	TheirAmount, OurAmount uint64
	Currency               string
	// In is what the channel holds that the books do not (book DR channel receivable / CR
	// suspense at once); Out what the books hold that the channel does not (an operator may
	// reverse it: DR suspense / CR channel receivable).
	In, Out uint64
	Note    string
	// Date is the day a short txn belongs to: the UTC date we recorded it (a line's is its
	// statement's). Not kept on records: their Day is it.
	Date string
	// InFlight: the line is about a request of the order still in flight (its own, or an
	// exception's refund): not decided yet. The host writes no record for it (it counts it
	// pending): the import after it settles decides it. Not kept on records.
	InFlight bool
}

// Ledgers finds the ledger of a currency among those served; ok false when none or more than
// one serve it (then nothing can be booked for a line without an order).
type Ledgers func(currency string) (ledgerID uint32, ok bool)

// MatchLine classes a statement line of channel name against o, the order its order number
// names (nil when there is none).
func (s *Setup) MatchLine(name string, l *channel.StatementLine, o *Order, ledgers Ledgers) Match {
	m := Match{Txn: l.Txn, OrderNo: l.OrderNo, Op: l.Op, TheirStatus: l.Status, TheirAmount: l.Amount, Currency: l.Currency}
	id, k, err := ParseOrderNo(l.OrderNo)
	switch {
	case err != nil:
		return s.long(m, ledgers, "not an order number of the ledger's")
	case o == nil || o.ID != id:
		return s.long(m, ledgers, "no such order")
	case o.Channel != name:
		return s.long(m, ledgers, "order "+fmt.Sprint(id)+" is of channel "+o.Channel)
	}
	m.Order, m.Ledger = o.ID, o.Ledger
	var ours *ChannelTxn
	for _, t := range ChannelTxns(o) {
		if t.Txn == l.Txn {
			ours = &t
			break
		}
	}
	if c := s.Currency(o.Ledger); c != l.Currency {
		m.Class, m.Note = LineAmount, fmt.Sprintf("currency %s, the order's is %s; nothing booked", l.Currency, c)
		if ours != nil {
			m.OurStatus, m.OurAmount = ours.Status, ours.Amount
		}
		return m
	}
	if ours != nil && (ours.OrderNo != l.OrderNo || ours.Op != l.Op) {
		m.Class, m.Note = LineStatus, fmt.Sprintf("the books hold txn %s for %s (%v), not %s (%v)", l.Txn, ours.OrderNo, ours.Op, l.OrderNo, l.Op)
		return m
	}
	if k < 0 {
		if l.Op != o.op() || o.card() == nil {
			return s.long(m, ledgers, fmt.Sprintf("order %d makes no %v request", o.ID, l.Op))
		}
		return matchOwn(m, o, ours)
	}
	if l.Op != channel.Refund || k >= len(o.Exceptions) {
		return s.long(m, ledgers, fmt.Sprintf("order %d made no refund %s", o.ID, l.OrderNo))
	}
	return matchRefund(m, o, k, ours)
}

// long classes a line with no request of ours behind it: its money is booked at once.
func (s *Setup) long(m Match, ledgers Ledgers, why string) Match {
	m.Class, m.Note = LineLong, why
	if m.TheirStatus != channel.Succeeded {
		m.Note += "; a failure: nothing moved"
		return m
	}
	l, ok := ledgers(m.Currency)
	if !ok {
		m.Note += "; no single ledger of currency " + m.Currency + ": nothing booked"
		return m
	}
	m.Ledger = l
	return money(m)
}

// heldBy reports whether an exception record of kind of the order is about txn (whatever
// its step: a record resolved still accounts for the money it held).
func (o *Order) heldBy(txn string, kind ExceptionKind) bool {
	for k := range o.Exceptions {
		if x := &o.Exceptions[k]; x.Kind == kind && x.Txn == txn && txn != "" {
			return true
		}
	}
	return false
}

// money sets In or Out from the two sides' amounts: a collection (pay) adds to what the
// channel holds for the platform, a payout or refund takes from it.
func money(m Match) Match {
	theirs, ours := m.TheirAmount, m.OurAmount
	if m.TheirStatus != channel.Succeeded {
		theirs = 0
	}
	if m.OurStatus != channel.Succeeded {
		ours = 0
	}
	more, less := theirs > ours, theirs < ours
	diff := max(theirs, ours) - min(theirs, ours)
	if m.Op != channel.Pay {
		more, less = less, more
	}
	switch {
	case more:
		m.In = diff
	case less:
		m.Out = diff
	}
	return m
}

// matchOwn classes a line about the order's own request.
func matchOwn(m Match, o *Order, ours *ChannelTxn) Match {
	paid := o.Outcome == OutcomeSucceeded || o.Outcome == OutcomeMismatch
	switch {
	case ours != nil:
		m.OurStatus, m.OurAmount = ours.Status, ours.Amount
		switch {
		case ours.Status != m.TheirStatus:
			m.Class, m.Note = LineStatus, fmt.Sprintf("the books hold txn %s %v, the channel %v", m.Txn, ours.Status, m.TheirStatus)
		case ours.Amount != m.TheirAmount:
			m.Class, m.Note = LineAmount, fmt.Sprintf("the books hold %d, the channel %d", ours.Amount, m.TheirAmount)
		case !ours.Own && o.Stage != StageDone:
			m.Class, m.Note = LineStatus, fmt.Sprintf("a second collection under txn %s (held by %s); the order is %v, still in flight: no record yet, import again once it settles",
				m.Txn, ours.What, o.State)
			m.InFlight = true
			return m
		case !ours.Own && o.State != Succeeded:
			// A second collection of an order that did not succeed: the money is held by its
			// record, which decides it.
			m.Class, m.Note = LineHeld, fmt.Sprintf("the order is %v; the channel collected under txn %s (held by %s)", o.State, m.Txn, ours.What)
			return m
		case !ours.Own:
			m.Class, m.Note = LineDuplicate, "held by "+ours.What
			return m
		case o.Outcome == OutcomeMismatch && !o.heldBy(m.Txn, AmountMismatch):
			// The order failed (AMOUNT_MISMATCH) and no record holds what the channel
			// collected (the order had no room for one): the books do not hold the money.
			m.OurStatus, m.OurAmount = channel.Failed, 0
			m.Class, m.Note = LineStatus, fmt.Sprintf("the order is %v (amount_mismatch: it asked %d) and no record holds the %d the channel collected under txn %s",
				o.State, o.Amount, m.TheirAmount, m.Txn)
		case o.Outcome == OutcomeMismatch:
			// The channel collected another amount than the order's: the order failed
			// (AMOUNT_MISMATCH) and its record holds what was collected. The line agrees with
			// the txn as the books hold it: held, as a second collection of a failed order;
			// the record decides the money.
			m.Class, m.Note = LineHeld, fmt.Sprintf("the order is %v (amount_mismatch: it asked %d); the channel collected %d under txn %s",
				o.State, o.Amount, m.TheirAmount, m.Txn)
			if ours.Holder != "" {
				m.Note += " (held by " + ours.Holder + ")"
			}
			return m
		default:
			m.Class = LineMatched
			return m
		}
		return held(money(m), ours)
	case m.TheirStatus == channel.Failed && !paid && o.Stage == StageDone:
		m.Class, m.Note = LineMatched, "a failed attempt of a failed order"
		m.OurStatus = channel.Failed
		return m
	case m.TheirStatus == channel.Failed:
		m.Class, m.Note = LineStatus, fmt.Sprintf("the channel reports txn %s failed; the order is %v (txn %q)", m.Txn, o.State, o.Txn)
		return m
	}
	// A success the books do not hold (its order not waiting for it, or it would have been
	// applied): money the channel moved for the request.
	m.Class, m.Note = LineStatus, fmt.Sprintf("the channel moved %d under txn %s; the order is %v (txn %q)", m.TheirAmount, m.Txn, o.State, o.Txn)
	if o.Stage != StageDone {
		m.Note += ", still in flight: nothing booked, no record yet, import again once it settles"
		m.InFlight = true
		return m
	}
	return money(m)
}

// matchRefund classes a line about the refund of exception k.
func matchRefund(m Match, o *Order, k int, ours *ChannelTxn) Match {
	x := &o.Exceptions[k]
	if ours != nil {
		m.OurStatus, m.OurAmount = ours.Status, ours.Amount
		if ours.Amount != m.TheirAmount || m.TheirStatus != channel.Succeeded {
			m.Class, m.Note = LineAmount, fmt.Sprintf("the books hold the refund %d, the channel %v %d", ours.Amount, m.TheirStatus, m.TheirAmount)
			if m.TheirStatus != channel.Succeeded {
				m.Class = LineStatus
			}
			return money(m)
		}
		m.Class = LineMatched
		return m
	}
	if m.TheirStatus == channel.Failed {
		m.Class, m.Note, m.OurStatus = LineMatched, "a refund attempt the books do not hold for made", channel.Failed
		return m
	}
	m.Class = LineStatus
	m.Note = fmt.Sprintf("the channel refunded %d under txn %s; exception %d (%v) is %v", m.TheirAmount, m.Txn, k, x.Kind, x.Step)
	if x.Step == ExcRefunding || x.Step == ExcBooking || x.Step == ExcUnbooking {
		m.Note += ", still in flight: nothing booked, no record yet, import again once it settles"
		m.InFlight = true
		return m
	}
	return money(m)
}

// held notes on a difference about money an exception record of the order holds and may
// still move (ChannelTxn.Holder) that its reversible_out waits for that record: while it is
// not resolved, Resolve refuses REVERSE (Order.StatementHolder: that record refunds the money,
// or an operator resolves it, and both would take the same money out of suspense); once it
// is, the difference is reversible like any other. The Out is kept, so the record holds what
// the books hold that the channel does not.
func held(m Match, t *ChannelTxn) Match {
	if t.Holder != "" && m.Out > 0 {
		m.Note += "; held by " + t.Holder + ": reversible once it is resolved (REVERSE refused until then)"
	}
	return m
}

// Full reports whether the order holds as many exception records as it may
// (ExceptionsMax). Records are never removed, so a full order stays full: a line that needs
// a record it will never take.
func (o *Order) Full() bool { return len(o.Exceptions) >= ExceptionsMax }

// NotApplied is line match m whose order o (as it stands after the attempt) could not take
// the line as news (ResultOverloaded). An order that is Full will refuse the txn on every
// import and every callback, so the line is decided here: the difference MatchLine found (a
// collection the books do not hold: a status_mismatch that books its In), recorded like any
// line, and the order never books it (no double booking). Otherwise (no room now for another
// reason: the engine overloaded) it is not decided: no record, pending, tried again.
func NotApplied(m Match, o *Order) Match {
	if o != nil && o.Full() && m.Class.Difference() && !m.InFlight {
		m.Note += fmt.Sprintf("; news its order could not take: it is full (%d records, never freed) and will never take it: decided here", ExceptionsMax)
		return m
	}
	m.InFlight = true
	m.Note += "; news its order could not take now (no room for a record): no record yet, import again"
	return m
}

// Short classes a money txn of the books that no imported statement has (see MatchStatement).
func Short(t ChannelTxn, ledgerID uint32) Match {
	m := Match{Class: LineShort, Txn: t.Txn, OrderNo: t.OrderNo, Order: t.Order, Op: t.Op, Ledger: ledgerID,
		OurStatus: t.Status, OurAmount: t.Amount, Note: "on no statement: " + t.What, Date: DateOf(t.At)}
	return held(money(m), &t)
}

// Relisted is line match m of a statement of one date whose txn the statement of another
// date (seenOn) had: what it moved was decided (and booked) there, so nothing is booked or
// reversible again; the line is reported.
func Relisted(m Match, seenOn string) Match {
	m.In, m.Out = 0, 0
	m.Note += fmt.Sprintf("; txn %s is on the statement of %s too: decided there, nothing booked again", m.Txn, seenOn)
	return m
}

// Day is a statement's day: its date and the nanosecond its UTC midnight starts.
type Day struct {
	Date  string
	Start uint64
}

// ParseDay reads a YYYY-MM-DD date.
func ParseDay(date string) (Day, error) {
	t, err := time.Parse(time.DateOnly, date)
	if err != nil || t.Format(time.DateOnly) != date || t.UnixNano() < 0 {
		return Day{}, fmt.Errorf("payment: date %q is not YYYY-MM-DD", date)
	}
	return Day{Date: date, Start: uint64(t.UnixNano())}, nil
}

// Over reports whether the day has ended, with the midnight tolerance, at now: only then may
// a statement of it be imported (a txn we record up to StatementTolerance after midnight may
// be on it, and a statement fetched earlier could not have the whole day).
func (d Day) Over(now uint64) bool { return now >= d.Start+DayNanos+StatementTolerance }

// DateOf is the UTC date of a time.
func DateOf(ns uint64) string { return time.Unix(0, int64(ns)).UTC().Format(time.DateOnly) }

// Window is the span of recording times whose txns a statement of the day may have:
// [Start - StatementTolerance, Start + DayNanos + StatementTolerance).
func (d Day) Window() (from, to uint64) {
	return d.Start - min(d.Start, StatementTolerance), d.Start + DayNanos + StatementTolerance
}

// ShortState is what became of a money txn of the books that the statement does not have.
type ShortState uint8

const (
	// ShortNone: it is on a statement (this one or one imported before), or outside the day.
	ShortNone ShortState = iota
	// ShortPending: a statement it may be on (a neighbouring day's, near midnight) is not
	// imported yet; it is looked at again when that one is.
	ShortPending
	// ShortFound: every statement it may be on is imported and none has it.
	ShortFound
)

// ShortOf decides a money txn t of the books that recorded it at t.At, against the
// statement of day d: on the statement (inStatement) or on one imported before (seen), or
// not yet due, or short. imported reports whether a statement of a date was imported (this
// one counts). Short txns belong to the date we recorded them on.
func ShortOf(d Day, t ChannelTxn, inStatement, seen bool, imported func(date string) bool) ShortState {
	from, to := d.Window()
	if t.Amount == 0 || t.Status != channel.Succeeded || t.At < from || t.At >= to || inStatement || seen {
		return ShortNone
	}
	home := DateOf(t.At)
	for _, at := range []uint64{t.At - min(t.At, StatementTolerance), t.At, t.At + StatementTolerance} {
		if date := DateOf(at); date != d.Date && !imported(date) {
			return ShortPending
		}
	}
	if home != d.Date && !imported(home) {
		return ShortPending
	}
	return ShortFound
}

// StatementRecord is a difference a statement import found, kept by (channel, day, txn): its
// own exception record, listed and resolved like the orders' records. It is written once; a
// re-import finds it and writes nothing, except that an open short record whose txn a later
// statement has is cleared (Clear).
type StatementRecord struct {
	Channel string
	Day     string // the statement's date (a short txn: the date we recorded it)
	Match
	// ExcBooking (In being booked) -> ExcOpen -> ExcUnbooking (Out being reversed, or a
	// cleared short's In: Clearing) -> ExcResolved
	Step    ExceptionStep
	Created uint64
	Updated uint64
	// ShortIn: the record was a short that had booked ShortIn (its In) when a statement of its
	// own day listed the txn with a difference of its own (Convert): the record became that
	// difference, and PostConvert moved suspense from ShortIn to the new In. 0: not converted,
	// or the short had booked nothing.
	ShortIn uint64
}

// NewStatementRecord is the record of a difference, booking its In at once.
func NewStatementRecord(name, date string, m Match, now uint64) StatementRecord {
	m.Date = ""
	r := StatementRecord{Channel: name, Day: date, Match: m, Step: ExcOpen, Created: now, Updated: now}
	if m.In > 0 && m.Ledger != 0 {
		r.Step = ExcBooking
	}
	return r
}

// Due is the transfer the record waits for, if any: its In booked, its Out reversed, or a
// cleared short's In booked back.
func (r *StatementRecord) Due(s *Setup) (ledger.Transfer, bool) {
	switch {
	case r.Step == ExcBooking && r.ShortIn > 0:
		return s.statementTransfer(r, PostConvert), true
	case r.Step == ExcBooking:
		return s.statementTransfer(r, PostBook), true
	case r.Clearing():
		return s.statementTransfer(r, PostClear), true
	case r.Step == ExcUnbooking:
		return s.statementTransfer(r, PostReverse), true
	}
	return ledger.Transfer{}, false
}

// Clearing reports whether the record is a cleared short whose booked In is being booked
// back (ExcUnbooking with no Out: a reversal needs an Out, so it is no reversal).
func (r *StatementRecord) Clearing() bool {
	return r.Step == ExcUnbooking && r.Class == LineShort && r.Out == 0 && r.In > 0
}

// Clear re-decides an open short record whose txn the statement of date has after all (the
// first statement of the day was fetched before the channel listed it, or the channel
// listed it on another day): it is not short. What the record booked (a short refund's or
// payout's In) is booked back through suspense by a posting of its own (PostClear: its id
// is derived from the record's channel, day and txn, apart from its booking's and a
// reversal's), then the record is resolved; a record that booked nothing is resolved at
// once. Only an open record is cleared: one still booking is cleared by an import after its
// booking is durable; one an operator resolved or is reversing stays as it is (reported).
func (r *StatementRecord) Clear(date string, now uint64) bool {
	if r.Class != LineShort || r.Step != ExcOpen {
		return false
	}
	r.Note += "; on the statement of " + date + " after all"
	r.Updated = now
	if r.In > 0 && r.Ledger != 0 {
		r.Note += ": its booking is booked back"
		r.Step = ExcUnbooking
		return true
	}
	r.Step = ExcResolved
	return true
}

// Convert re-decides an open short record whose txn the statement of its own day (the
// record's Day) has after all, with a difference of its own (m: a line's match, decided, not
// short): the line's record would have the short record's key (channel, day, txn), so the
// short record becomes the line's difference instead of being cleared. What the short booked
// (its In) is moved to what the line's difference books (m.In) by one posting of its own,
// PostConvert (id from the record's channel, day and txn, apart from its booking's, its
// clearing's and a reversal's), booking only the delta: back through suspense (suspense_out)
// when the short booked more, into suspense (suspense_in) when less; nothing when the same.
// A short that booked nothing books m.In by PostBook, which it never made. The record's Out
// is the line's (an operator's REVERSE). It answers false, changing nothing, unless the
// record is an open short of day date and m a decided line difference.
func (r *StatementRecord) Convert(date string, m Match, now uint64) bool {
	if r.Class != LineShort || r.Step != ExcOpen || r.Day != date || !m.Class.Difference() || m.Class == LineShort ||
		m.InFlight || m.Ledger != r.Ledger || m.Order != r.Order {
		return false
	}
	was, booked := r.Note, r.In
	if r.Ledger == 0 {
		booked = 0 // nothing was booked
	}
	m.Date = ""
	r.Match = m
	r.Note = fmt.Sprintf("%s; was short (%s; booked_in %d): on the statement of %s after all, with this difference", m.Note, was, booked, date)
	r.Updated, r.Step, r.ShortIn = now, ExcOpen, booked
	if r.Ledger != 0 && r.In != booked {
		r.Step = ExcBooking
	}
	return true
}

// Booked moves the record on once the ledger answered its transfer: durable (done), or
// refused (the record stays, noted, and the transfer is tried again).
func (r *StatementRecord) Booked(res ledger.TransferResult, now uint64) {
	r.Updated = now
	if !done(res) {
		if why := fmt.Sprintf("; the ledger refused its posting (%v): tried again", res); !strings.HasSuffix(r.Note, why) {
			r.Note += why
		}
		return
	}
	switch r.Step {
	case ExcBooking:
		r.Step = ExcOpen
	case ExcUnbooking:
		r.Step = ExcResolved
	}
}

// Resolve applies an operator's resolution: ResolveClose closes the record (what it booked
// stays in suspense for finance); ResolveReverse books its Out back through suspense. o is
// the order the record names as it stands (nil: none): while an exception record of it holds
// the txn's money (StatementHolder), ResolveReverse is refused (ResultNotRefundable): that
// record may still refund it, and both would take the same money out of suspense.
func (r *StatementRecord) Resolve(how Resolution, note string, o *Order, now uint64) Result {
	switch {
	case len(note) > NoteBytesMax:
		return ResultNoteTooLong
	case r.Step != ExcOpen:
		return ResultExceptionNotOpen
	}
	switch how {
	case ResolveClose:
		r.Step = ExcResolved
	case ResolveReverse:
		if r.Out == 0 || r.Ledger == 0 {
			return ResultNotRefundable
		}
		if o != nil && o.ID == r.Order {
			if _, ok := o.StatementHolder(r.Txn, r.OrderNo); ok {
				return ResultNotRefundable
			}
		}
		r.Step = ExcUnbooking
	default:
		return ResultNotRefundable
	}
	if note != "" {
		r.Note = note
	}
	r.Updated = now
	return ResultOK
}

// StatementHolder names the exception record of o that holds the money of a statement
// record's txn and may still move it: a record not resolved that booked the txn's collection
// to suspense (a duplicate payment, an amount mismatch), or whose refund request is the one
// the record's order number names. ok false: none.
func (o *Order) StatementHolder(txn, orderNo string) (string, bool) {
	for k := range o.Exceptions {
		if x := &o.Exceptions[k]; x.Step != ExcResolved && x.Booked() && x.Txn == txn {
			return fmt.Sprintf("exception %d (%v, %v)", k, x.Kind, x.Step), true
		}
	}
	if id, k, err := ParseOrderNo(orderNo); err == nil && id == o.ID && k >= 0 && k < len(o.Exceptions) &&
		o.Exceptions[k].Step != ExcResolved {
		return fmt.Sprintf("exception %d (%v, %v)", k, o.Exceptions[k].Kind, o.Exceptions[k].Step), true
	}
	return "", false
}

// StatementPosting is which of a statement record's postings a transfer is.
type StatementPosting uint8

const (
	// PostBook books the record's In (suspense_in).
	PostBook StatementPosting = iota
	// PostReverse reverses its Out (suspense_out), an operator's REVERSE.
	PostReverse
	// PostClear books back the In of a short record cleared by a later statement (suspense_out).
	PostClear
	// PostConvert moves what a short record booked to what the line's difference it became
	// books (StatementRecord.Convert): suspense_out of the excess, or suspense_in of the rest.
	PostConvert
)

// StatementTransferID is the id of the transfer that books a statement record's In (or, with
// reversal, reverses its Out): derived from (channel, date, txn) alone, so that a crash and
// replay, or a second import, books nothing twice. Ids have the top two bits set: apart from
// the orders' (top bit, order ids below 2^56) and refused to API clients.
func StatementTransferID(name, date, txn string, reversal bool) uint64 {
	if reversal {
		return StatementPostingID(name, date, txn, PostReverse)
	}
	return StatementPostingID(name, date, txn, PostBook)
}

// StatementPostingID is the id of posting p of the statement record (channel, date, txn).
func StatementPostingID(name, date, txn string, p StatementPosting) uint64 {
	h := sha256.New()
	for _, s := range []string{name, date, txn} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	h.Write([]byte{byte(p)})
	return transferIDBit | statementIDBit | binary.BigEndian.Uint64(h.Sum(nil))&(statementIDBit-1)
}

// statementIDBit marks, with transferIDBit, the transfers of statement records.
const statementIDBit = 1 << 62

// IsStatementTransfer reports whether a transfer id is a statement record's.
func IsStatementTransfer(id uint64) bool {
	return id&(transferIDBit|statementIDBit) == transferIDBit|statementIDBit
}

// statementTransfer books a record's In (suspense_in: DR channel receivable / CR suspense),
// reverses its Out (suspense_out: DR suspense / CR channel receivable), or books a cleared
// short's In back (suspense_out of the In).
func (s *Setup) statementTransfer(r *StatementRecord, post StatementPosting) ledger.Transfer {
	code, amount := s.names.SuspenseIn, r.In
	switch post {
	case PostReverse:
		code, amount = s.names.SuspenseOut, r.Out
	case PostClear:
		code = s.names.SuspenseOut
	case PostConvert:
		if r.In < r.ShortIn {
			code, amount = s.names.SuspenseOut, r.ShortIn-r.In
		} else {
			amount = r.In - r.ShortIn
		}
	}
	p := s.codes[code]
	return ledger.Transfer{ID: StatementPostingID(r.Channel, r.Day, r.Txn, post),
		DebitAccountID:  s.PlatformAccount(r.Ledger, p.Debit, r.Channel),
		CreditAccountID: s.PlatformAccount(r.Ledger, p.Credit, r.Channel), Amount: amount, Ledger: r.Ledger,
		Code: s.ids[code]}
}

// CompareMatches orders a report: by class, then order number, then txn.
func CompareMatches(a, b Match) int {
	return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.OrderNo, b.OrderNo), cmp.Compare(a.Txn, b.Txn))
}
