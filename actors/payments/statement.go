package payments

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// Limits of channel reconciliation.
const (
	// StatementReportMax is the most differences a report lists per class (its counts are
	// complete, and every difference has its record).
	StatementReportMax = 1000
	// statementRecordsMax bounds the records one commit of an import writes.
	statementRecordsMax = 8190
	// StatementFetchTimeout bounds the fetch of a statement from its channel (a caller's
	// shorter deadline wins).
	StatementFetchTimeout = 5 * time.Minute
)

// Errors of channel reconciliation.
var (
	// ErrBadStatement: the statement is refused (unsigned, forged, malformed, of another
	// date); nothing was read from it or written.
	ErrBadStatement = channel.ErrBadStatement
	// ErrNoStatements: the channel's client cannot fetch statements.
	ErrNoStatements = errors.New("payments: the channel's client cannot fetch statements")
	// ErrStatementFetch: the channel did not hand over its statement.
	ErrStatementFetch = errors.New("payments: the channel's statement could not be fetched")
	// ErrDayNotOver: the statement's day has not ended, with the midnight tolerance
	// (payment.StatementTolerance), on the ledger's clock: a statement of it could not be the
	// whole day's. Nothing was fetched, read or written.
	ErrDayNotOver = fmt.Errorf("%w: the day has not ended (with the midnight tolerance) on the ledger's clock", ErrBadStatement)
)

// StatementFetcher is a channel client that hands over its signed daily statements
// (channel.HTTPClient does).
type StatementFetcher interface {
	FetchStatement(ctx context.Context, date string) (body []byte, sig string, err error)
}

// StatementReport is what an import of a statement found. Importing the same file again
// finds the same (Applied aside: lines already applied are not news any more) and writes
// nothing.
type StatementReport struct {
	Channel, Date string
	Lines         int
	// Applied counts lines that were news to their order (an outcome it awaited, a second
	// collection, a refund) and were applied as the channel's callback.
	Applied int
	// NotApplied counts such lines their order could not take (no room for a record). A line
	// whose order is full (payment.Order.Full: records are never freed) is decided and
	// recorded (payment.NotApplied: its money booked by the record, never by the order);
	// any other gets no record (it is also counted in Pending): import again later.
	NotApplied int
	Counts     map[payment.LineClass]int
	// Pending counts money txns of the books missing from this statement that may be on a
	// neighbouring day's not imported yet (near midnight), and lines not decided yet: about a
	// request still in flight, or news their order could not take (NotApplied). They get no
	// record; the import after they settle decides them.
	Pending int
	// Cleared counts open short records (of this day or another) whose txn this statement has
	// after all: re-decided, what they booked booked back (payment.StatementRecord.Clear), or
	// converted into the line's own difference on the short's own day (Convert).
	Cleared int
	// Differences lists at most StatementReportMax differences per class: by class, order
	// number, txn.
	Differences []payment.Match
	// Held lists at most StatementReportMax held lines (payment.LineHeld: not differences,
	// the money held by an exception record of their order), by order number, txn.
	Held []payment.Match
	// NewRecords counts the records this import wrote; the others existed.
	NewRecords int
	// Again: this file was imported before.
	Again bool
}

// Clean reports whether the statement and the books agree: no difference.
func (r *StatementReport) Clean() bool {
	for c, n := range r.Counts {
		if c.Difference() && n > 0 {
			return false
		}
	}
	return true
}

// statements serializes imports and resolutions of statement records.
type statements struct {
	mu sync.Mutex
	// fetch admits one ImportStatement at a time, taken before the fetch: a statement may be
	// 256 MiB, and concurrent imports would each hold one.
	fetch chan struct{}
	// due: a record's posting the ledger could not take yet waits; the retry loop makes it.
	due atomic.Bool
}

// ImportStatement fetches channel name's statement of date from the channel and imports it
// (ImportStatementFile).
func (e *Engine) ImportStatement(ctx context.Context, name, date string) (StatementReport, error) {
	c, ok := e.cfg.Clients[name]
	if !ok || e.gateways[name] == nil {
		return StatementReport{}, fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	f, ok := c.(StatementFetcher)
	if !ok {
		return StatementReport{}, fmt.Errorf("%w: %q", ErrNoStatements, name)
	}
	if err := e.dayOver(date); err != nil {
		return StatementReport{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, StatementFetchTimeout)
	defer cancel()
	select {
	case e.stmts.fetch <- struct{}{}:
		defer func() { <-e.stmts.fetch }()
	case <-ctx.Done():
		return StatementReport{}, fmt.Errorf("%w: waiting for another import: %w", ErrStatementFetch, ctx.Err())
	}
	body, sig, err := f.FetchStatement(ctx, date)
	if err != nil {
		if errors.Is(err, channel.ErrBadStatement) {
			return StatementReport{}, err
		}
		return StatementReport{}, fmt.Errorf("%w: %w", ErrStatementFetch, err)
	}
	return e.ImportStatementFile(name, date, body, sig)
}

// ImportStatementFile imports channel name's statement of date: body, signed with sig (hex
// HMAC-SHA256 under the channel's secret). The signature is verified before a byte of the
// body is read, then the body is parsed whole; a refusal (ErrBadStatement) writes nothing.
//
// Then: lines that are news to their order are applied as the channel's callbacks
// (payment.Order.StatementNews), each durable before the next; every line is classed against
// the books (payment.MatchLine) and every money txn the books recorded in the day's window is
// looked for (payment.ShortOf); each difference gets a record, once per (channel, day, txn);
// the txns of the statement are marked seen and the file imported, in one synced batch; then
// the records' postings are made (ids derived from channel, day and txn: a crash and a
// re-import book nothing twice).
func (e *Engine) ImportStatementFile(name, date string, body []byte, sig string) (StatementReport, error) {
	rep := StatementReport{Channel: name, Date: date, Counts: map[payment.LineClass]int{}}
	if err := e.enter(); err != nil {
		return rep, err
	}
	defer e.active.Done()
	secret, ok := e.cfg.Secrets[name]
	if !ok || e.gateways[name] == nil {
		return rep, fmt.Errorf("%w: %q (or no secret to verify its statements)", ErrUnknownChannel, name)
	}
	if err := e.dayOver(date); err != nil {
		return rep, err
	}
	day, _ := payment.ParseDay(date) // dayOver parsed it
	lines, err := channel.ParseSignedStatement(secret, body, sig, date)
	if err != nil {
		return rep, err
	}
	rep.Lines = len(lines)
	sum := sha256.Sum256(body)
	e.stmts.mu.Lock()
	defer e.stmts.mu.Unlock()
	if err := e.resumeStatementRecords(); err != nil {
		return rep, err
	}
	err = e.ledger.Read(func(v *storage.Reader) (err error) {
		_, rep.Again, err = v.StatementImported(name, date, sum)
		return err
	})
	if err != nil {
		return rep, err
	}
	// Applied again on every import of the file: a line already applied is no news any more,
	// and one its order could not take before (no room) is tried again.
	notApplied, err := e.applyNews(name, lines, &rep)
	if err != nil {
		return rep, err
	}
	records, seen, err := e.matchStatement(name, day, lines, sum, notApplied, &rep)
	if err != nil {
		return rep, err
	}
	w := storage.StatementWrite{Channel: name, Date: date, Seen: seen}
	if !rep.Again {
		w.Import, w.Lines = &sum, len(lines)
	}
	for len(records) > statementRecordsMax {
		if err := e.store.CommitStatement(storage.StatementWrite{Records: records[:statementRecordsMax]}); err != nil {
			return rep, err
		}
		records = records[statementRecordsMax:]
	}
	w.Records = records
	if len(w.Records) > 0 || len(w.Seen) > 0 || !rep.Again {
		if err := e.store.CommitStatement(w); err != nil {
			return rep, err
		}
	}
	return rep, e.resumeStatementRecords()
}

// statementPostingsWait bounds how long an import waits for the orders it applied lines to
// to make the postings those lines caused, so that the lines are classed against settled
// orders; one still posting after it is classed as in flight (pending, no record).
const statementPostingsWait = 5 * time.Second

// awaitPostings waits, at most statementPostingsWait, until none of orders ids has a ledger
// posting to make (an outcome to settle, an exception's money to book or unbook); a refund
// the channel has is not waited for.
func (e *Engine) awaitPostings(ids []uint64) {
	for deadline := time.Now().Add(statementPostingsWait); len(ids) > 0 && time.Now().Before(deadline); {
		os, err := e.Orders(ids)
		if err != nil {
			return // the matching reads the store again, and says so
		}
		keep := ids[:0]
		for i, o := range os {
			if o != nil && postingsDue(o) {
				keep = append(keep, ids[i])
			}
		}
		if ids = keep; len(ids) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func postingsDue(o *payment.Order) bool {
	if o.Stage == payment.StageHold || o.Stage == payment.StageSettle {
		return true
	}
	for k := range o.Exceptions {
		if s := o.Exceptions[k].Step; s == payment.ExcBooking || s == payment.ExcUnbooking {
			return true
		}
	}
	return false
}

// dayOver checks date (YYYY-MM-DD) and that its day is over on the ledger's clock
// (payment.Day.Over): a statement is of a whole day.
func (e *Engine) dayOver(date string) error {
	day, err := payment.ParseDay(date)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	if now := e.cfg.Now(); !day.Over(now) {
		return fmt.Errorf("%w: %s (it is %s)", ErrDayNotOver, date, time.Unix(0, int64(now)).UTC().Format(time.RFC3339))
	}
	return nil
}

// applyNews applies, as the channel's callbacks, the lines that are news to their order. It
// answers the txns of the lines their order could not take (not applied).
func (e *Engine) applyNews(name string, lines []channel.StatementLine, rep *StatementReport) (map[string]bool, error) {
	var news []int
	now := e.cfg.Now()
	err := e.ledger.Read(func(v *storage.Reader) error {
		for i := range lines {
			o, err := lineOrder(v, &lines[i], nil)
			if err != nil {
				return err
			}
			if o != nil && o.Channel == name && o.StatementNews(e.cfg.Setup, &lines[i], now) {
				news = append(news, i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	notApplied := map[string]bool{}
	var applied []uint64
	defer func() { e.awaitPostings(applied) }()
	for _, i := range news {
		res, err := e.Notice(name, lines[i].Notice())
		if err != nil {
			return nil, fmt.Errorf("payments: statement line %s: %w", lines[i].Txn, err)
		}
		if res == payment.ResultOK {
			rep.Applied++
			if id, _, err := payment.ParseOrderNo(lines[i].OrderNo); err == nil {
				applied = append(applied, id)
			}
			continue
		}
		rep.NotApplied++
		notApplied[lines[i].Txn] = true
		e.log.Warn("payments: statement line not applied to its order", "channel", name, "order_no", lines[i].OrderNo,
			"txn", lines[i].Txn, "result", res.String())
	}
	return notApplied, nil
}

// lineOrder reads the order a line's order number names (through cache when given).
func lineOrder(v *storage.Reader, l *channel.StatementLine, cache map[uint64]*payment.Order) (*payment.Order, error) {
	id, _, err := payment.ParseOrderNo(l.OrderNo)
	if err != nil {
		return nil, nil
	}
	if o, ok := cache[id]; ok {
		return o, nil
	}
	o, _, err := v.Order(id)
	if cache != nil && err == nil {
		cache[id] = o
	}
	return o, err
}

// matchStatement classes every line and looks for short txns on one durable snapshot, fills
// the report, and answers the records to write (the differences that have none yet, and the
// short records the statement clears) and the txns to mark seen (those no statement had).
func (e *Engine) matchStatement(name string, day payment.Day, lines []channel.StatementLine, sum [32]byte,
	notApplied map[string]bool, rep *StatementReport) ([]*payment.StatementRecord, []string, error) {
	var matches []payment.Match
	var records, cleared []*payment.StatementRecord
	var seen []string
	now := e.cfg.Now()
	err := e.ledger.Read(func(v *storage.Reader) error {
		orders := map[uint64]*payment.Order{}
		inStatement := make(map[string]bool, len(lines))
		for i := range lines {
			l := &lines[i]
			o, err := lineOrder(v, l, orders)
			if err != nil {
				return err
			}
			m := e.cfg.Setup.MatchLine(name, l, o, e.ledgerOf)
			switch on, found, err := v.StatementSeen(name, l.Txn); {
			case err != nil:
				return err
			case !found:
				seen = append(seen, l.Txn)
			case on != day.Date:
				m = payment.Relisted(m, on)
			}
			if notApplied[l.Txn] {
				m = payment.NotApplied(m, o)
			}
			matches = append(matches, m)
			inStatement[l.Txn] = true
			if r, err := e.clearShort(v, name, day.Date, l, o, m, now); err != nil {
				return err
			} else if r != nil {
				cleared = append(cleared, r)
			}
		}
		shorts, err := e.shorts(v, name, day, inStatement, sum, rep)
		if err != nil {
			return err
		}
		matches = append(matches, shorts...)
		for _, m := range matches {
			rep.Counts[m.Class]++
			if m.Class == payment.LineHeld && len(rep.Held) < StatementReportMax {
				rep.Held = append(rep.Held, m)
			}
			if !m.Class.Difference() {
				continue
			}
			if rep.Counts[m.Class] <= StatementReportMax {
				rep.Differences = append(rep.Differences, m)
			}
			if m.InFlight {
				rep.Pending++ // decided once it settles: no record now
				continue
			}
			date := day.Date
			if m.Date != "" {
				date = m.Date
			}
			x, found, err := v.StatementRecord(name, date, m.Txn)
			if err != nil {
				return err
			}
			if found && m.Class != payment.LineShort && x.Class == payment.LineShort &&
				!slices.ContainsFunc(cleared, func(c *payment.StatementRecord) bool { return c.Day == date && c.Txn == m.Txn }) {
				// A short record of the line's own key that this import could not convert into
				// the line's difference (StatementRecord.Convert): still booking (the next
				// import converts it), or an operator resolved or is reversing it.
				e.log.Error("payments: a statement line's difference has the key of a short record that is not open: not recorded, an operator must decide it (or import again once its booking is durable)",
					"channel", name, "day", date, "txn", m.Txn, "class", m.Class.String(), "in", m.In, "out", m.Out,
					"short_step", x.Step.String(), "note", m.Note)
			}
			if !found {
				r := payment.NewStatementRecord(name, date, m, now)
				records = append(records, &r)
			}
		}
		return nil
	})
	slices.SortStableFunc(rep.Differences, payment.CompareMatches)
	slices.SortStableFunc(rep.Held, payment.CompareMatches)
	rep.NewRecords = len(records)
	rep.Cleared = len(cleared)
	return append(records, cleared...), seen, err
}

// clearShort finds the open short record of the txn of line l (of the statement of date,
// classed m), if any, and re-decides it: a short txn belongs to the day we recorded it, so
// its record is looked for there. A line not decided yet (in flight, not applied) leaves it
// as it is (an import after the line settles decides it). A line that is a difference of its
// own on the short's own day converts the record into that difference
// (payment.StatementRecord.Convert: the line's record would have its key); otherwise the
// record is cleared (payment.StatementRecord.Clear) and the line's difference, if any, gets
// its own record under the statement's date.
func (e *Engine) clearShort(v *storage.Reader, name, date string, l *channel.StatementLine, o *payment.Order,
	m payment.Match, now uint64) (*payment.StatementRecord, error) {
	if o == nil || o.Channel != name || m.InFlight {
		return nil, nil
	}
	for _, t := range payment.ChannelTxns(o) {
		if t.Txn != l.Txn || t.At == 0 {
			continue
		}
		r, found, err := v.StatementRecord(name, payment.DateOf(t.At), t.Txn)
		if err != nil || !found {
			return nil, err
		}
		if r.Class == payment.LineShort && r.Step == payment.ExcBooking {
			e.log.Warn("payments: a short record's txn is on a statement, but its booking is not durable yet: cleared by an import after it is",
				"channel", name, "day", r.Day, "txn", r.Txn)
		}
		if r.Day == date && m.Class.Difference() {
			if !r.Convert(date, m, now) {
				return nil, nil
			}
			return r, nil
		}
		if !r.Clear(date, now) {
			return nil, nil
		}
		return r, nil
	}
	return nil, nil
}

// shorts are the money txns the books recorded in the day's window that no imported
// statement has and that are due (payment.ShortOf).
func (e *Engine) shorts(v *storage.Reader, name string, day payment.Day, inStatement map[string]bool, sum [32]byte,
	rep *StatementReport) ([]payment.Match, error) {
	from, to := day.Window()
	var ids []uint64
	seenID := map[uint64]bool{}
	err := v.OrdersWithTxnsRecorded(name, from, to, func(id uint64) bool {
		if !seenID[id] {
			seenID[id] = true
			ids = append(ids, id)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	imported := map[string]bool{day.Date: true}
	var ierr error
	isImported := func(date string) bool {
		done, ok := imported[date]
		if !ok {
			done, _, ierr = v.StatementImported(name, date, sum)
			imported[date] = done
		}
		return done
	}
	var out []payment.Match
	for _, id := range ids {
		o, found, err := v.Order(id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("payments: order %d is indexed by its txns but missing", id)
		}
		for _, t := range payment.ChannelTxns(o) {
			if t.At < from || t.At >= to || inStatement[t.Txn] {
				continue
			}
			_, seen, err := v.StatementSeen(name, t.Txn)
			if err != nil {
				return nil, err
			}
			switch payment.ShortOf(day, t, false, seen, isImported) {
			case payment.ShortPending:
				rep.Pending++
			case payment.ShortFound:
				out = append(out, payment.Short(t, o.Ledger))
			}
			if ierr != nil {
				return nil, ierr
			}
		}
	}
	return out, nil
}

// ledgerOf is the one payment ledger of a currency.
func (e *Engine) ledgerOf(currency string) (uint32, bool) {
	var found uint32
	n := 0
	for _, l := range e.cfg.Ledgers {
		if e.cfg.Setup.Currency(l) == currency {
			found = l
			n++
		}
	}
	return found, n == 1
}

// resumeStatementRecords makes the postings statement records wait for (booking a
// difference, reversing one): at start, and around every import and resolution. A posting
// the ledger cannot take yet waits for the next time; one it refuses is noted on the record.
func (e *Engine) resumeStatementRecords() error {
	var due []*payment.StatementRecord
	var dueTs []ledger.Transfer // the transfer each of due waits for
	err := e.ledger.Read(func(v *storage.Reader) error {
		return v.StatementRecords(false, "", "", "", func(r *payment.StatementRecord) bool {
			if t, ok := r.Due(e.cfg.Setup); ok {
				due, dueTs = append(due, r), append(dueTs, t)
			}
			return true
		})
	})
	if err != nil {
		return err
	}
	for len(due) > 0 {
		n := min(len(due), ledger.BatchEventsMax)
		batch, ts := due[:n], dueTs[:n]
		due, dueTs = due[n:], dueTs[n:]
		rs, err := e.ledger.CreateTransfers(ts)
		if err != nil {
			return fmt.Errorf("payments: statement records' postings: %w", err)
		}
		now := e.cfg.Now()
		var moved []*payment.StatementRecord
		for i, r := range batch {
			if payment.Retryable(rs[i]) {
				e.stmts.due.Store(true) // the retry loop tries again
				continue
			}
			if rs[i] != ledger.ResultOK && rs[i] != ledger.ResultExists {
				e.log.Error("payments: the ledger refused a statement record's posting", "channel", r.Channel, "day", r.Day,
					"txn", r.Txn, "result", rs[i].String())
			}
			r.Booked(rs[i], now)
			moved = append(moved, r)
		}
		if err := e.store.CommitStatement(storage.StatementWrite{Records: moved}); err != nil {
			return err
		}
	}
	return nil
}

// statementRetryEvery is how often the retry loop looks whether a statement record's posting
// waits (at least the engine's tick).
const statementRetryEvery = time.Second

// retryStatementRecords makes the statement records' postings that the ledger could not take
// yet (payment.Retryable) again, on a timer, until Stop: not only at the next import or
// restart.
func (e *Engine) retryStatementRecords() {
	defer e.loops.Done()
	t := time.NewTicker(max(e.cfg.Tick, statementRetryEvery))
	defer t.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-t.C:
		}
		if !e.stmts.due.Load() || e.enter() != nil {
			continue
		}
		e.stmts.mu.Lock()
		e.stmts.due.Store(false) // set again by a posting still not taken
		if err := e.resumeStatementRecords(); err != nil {
			e.stmts.due.Store(true)
			e.log.Error("payments: statement records' postings", "err", err)
		}
		e.stmts.mu.Unlock()
		e.active.Done()
	}
}

// ResolveStatement applies an operator's resolution to the statement record of (channel,
// date, txn): payment.ResolveClose, or payment.ResolveReverse (its Out booked back through
// suspense). ResultExceptionNotFound when there is no such record.
func (e *Engine) ResolveStatement(name, date, txn string, how payment.Resolution, note string) (payment.Result, *payment.StatementRecord, error) {
	if err := e.enter(); err != nil {
		return 0, nil, err
	}
	defer e.active.Done()
	e.stmts.mu.Lock()
	defer e.stmts.mu.Unlock()
	var r *payment.StatementRecord
	err := e.ledger.Read(func(v *storage.Reader) (err error) {
		r, _, err = v.StatementRecord(name, date, txn)
		return err
	})
	if err != nil || r == nil {
		return payment.ResultExceptionNotFound, nil, err
	}
	var o *payment.Order
	if r.Order != 0 {
		if err := e.ledger.Read(func(v *storage.Reader) (err error) { o, _, err = v.Order(r.Order); return err }); err != nil {
			return 0, nil, err
		}
	}
	if res := r.Resolve(how, note, o, e.cfg.Now()); res != payment.ResultOK {
		return res, r, nil
	}
	if err := e.store.CommitStatement(storage.StatementWrite{Records: []*payment.StatementRecord{r}}); err != nil {
		return 0, nil, err
	}
	if err := e.resumeStatementRecords(); err != nil {
		return 0, nil, err
	}
	err = e.ledger.Read(func(v *storage.Reader) (err error) {
		r, _, err = v.StatementRecord(name, date, txn)
		return err
	})
	return payment.ResultOK, r, err
}

// StatementExceptions lists statement records not resolved (or all), by channel, date, txn,
// after the record (channel, date, txn) (empty: from the first), at most limit (ListMax).
func (e *Engine) StatementExceptions(includeResolved bool, name, date, txn string, limit int) ([]*payment.StatementRecord, error) {
	limit = min(max(limit, 1), ListMax)
	var out []*payment.StatementRecord
	err := e.read(func(v *storage.Reader) error {
		return v.StatementRecords(includeResolved, name, date, txn, func(r *payment.StatementRecord) bool {
			out = append(out, r)
			return len(out) < limit
		})
	})
	return out, err
}
