package payment

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
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
}

// ChannelTxns are the channel transactions order o recorded, its own first, then its records'
// in record order. Each txn appears once.
func ChannelTxns(o *Order) []ChannelTxn {
	var out []ChannelTxn
	if o.Txn != "" && o.card() != nil {
		t := ChannelTxn{Txn: o.Txn, OrderNo: OrderNo(o.ID), Order: o.ID, Op: o.op(), Status: channel.Failed, At: o.TxnAt,
			What: "the order's outcome"}
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
		case x.Txn != o.Txn:
			out = append(out, ChannelTxn{Txn: x.Txn, OrderNo: OrderNo(o.ID), Order: o.ID, Op: channel.Pay,
				Status: channel.Succeeded, Amount: x.Amount, At: x.Created, What: fmt.Sprintf("exception %d (%v)", k, x.Kind)})
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
func (o *Order) StatementNews(s *Setup, l *channel.StatementLine, now uint64) bool {
	c := o.cloneForTrial()
	n := l.Notice()
	n.BizID = o.BizID
	v := c.Version
	_, res := c.OnNotice(s, &n, now)
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

func (o *Order) cloneForTrial() *Order {
	c := *o
	c.Instruments = slices.Clone(o.Instruments)
	c.Exceptions = slices.Clone(o.Exceptions)
	return &c
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
	lineClasses
)

var lineClassNames = [...]string{LineMatched: "matched", LineDuplicate: "duplicate", LineLong: "long",
	LineAmount: "amount_mismatch", LineStatus: "status_mismatch", LineShort: "short"}

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
		case ours.What != "the order's outcome" && o.State != Succeeded:
			// A second collection of an order that did not succeed: the money is held by its
			// record, and the channel says the request succeeded while the order failed.
			m.Class, m.Note = LineStatus, fmt.Sprintf("the order is %v; the channel collected under txn %s (held by %s)", o.State, m.Txn, ours.What)
			return m
		case ours.What != "the order's outcome":
			m.Class, m.Note = LineDuplicate, "held by "+ours.What
			return m
		default:
			m.Class = LineMatched
			return m
		}
		return money(m)
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
		m.Note += ", still in flight: nothing booked, import again once it settles"
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
		m.Note += ", still in flight: nothing booked, import again once it settles"
		return m
	}
	return money(m)
}

// Short classes a money txn of the books that no imported statement has (see MatchStatement).
func Short(t ChannelTxn, ledgerID uint32) Match {
	m := Match{Class: LineShort, Txn: t.Txn, OrderNo: t.OrderNo, Order: t.Order, Op: t.Op, Ledger: ledgerID,
		OurStatus: t.Status, OurAmount: t.Amount, Note: "on no statement: " + t.What, Date: DateOf(t.At)}
	return money(m)
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
// re-import finds it and writes nothing.
type StatementRecord struct {
	Channel string
	Day     string // the statement's date (a short txn: the date we recorded it)
	Match
	Step    ExceptionStep // ExcBooking (In being booked) -> ExcOpen -> ExcUnbooking (Out being reversed) -> ExcResolved
	Created uint64
	Updated uint64
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

// Due is the transfer the record waits for, if any: its In booked, or its Out reversed.
func (r *StatementRecord) Due(s *Setup) (ledger.Transfer, bool) {
	switch r.Step {
	case ExcBooking:
		return s.statementTransfer(r, false), true
	case ExcUnbooking:
		return s.statementTransfer(r, true), true
	}
	return ledger.Transfer{}, false
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
// stays in suspense for finance); ResolveReverse books its Out back through suspense.
func (r *StatementRecord) Resolve(how Resolution, note string, now uint64) Result {
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

// StatementTransferID is the id of the transfer that books a statement record's In (or, with
// reversal, reverses its Out): derived from (channel, date, txn) alone, so that a crash and
// replay, or a second import, books nothing twice. Ids have the top two bits set: apart from
// the orders' (top bit, order ids below 2^56) and refused to API clients.
func StatementTransferID(name, date, txn string, reversal bool) uint64 {
	h := sha256.New()
	for _, s := range []string{name, date, txn} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	if reversal {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	return transferIDBit | statementIDBit | binary.BigEndian.Uint64(h.Sum(nil))&(statementIDBit-1)
}

// statementIDBit marks, with transferIDBit, the transfers of statement records.
const statementIDBit = 1 << 62

// IsStatementTransfer reports whether a transfer id is a statement record's.
func IsStatementTransfer(id uint64) bool {
	return id&(transferIDBit|statementIDBit) == transferIDBit|statementIDBit
}

// statementTransfer books a record's In (suspense_in: DR channel receivable / CR suspense) or
// reverses its Out (suspense_out: DR suspense / CR channel receivable).
func (s *Setup) statementTransfer(r *StatementRecord, reversal bool) ledger.Transfer {
	code, amount := s.names.SuspenseIn, r.In
	if reversal {
		code, amount = s.names.SuspenseOut, r.Out
	}
	p := s.codes[code]
	return ledger.Transfer{ID: StatementTransferID(r.Channel, r.Day, r.Txn, reversal),
		DebitAccountID:  s.PlatformAccount(r.Ledger, p.Debit, r.Channel),
		CreditAccountID: s.PlatformAccount(r.Ledger, p.Credit, r.Channel), Amount: amount, Ledger: r.Ledger,
		Code: s.ids[code]}
}

// CompareMatches orders a report: by class, then order number, then txn.
func CompareMatches(a, b Match) int {
	return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.OrderNo, b.OrderNo), cmp.Compare(a.Txn, b.Txn))
}
