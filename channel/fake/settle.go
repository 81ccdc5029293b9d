package fake

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// txn is one movement (or refusal) at the channel: a line of a statement.
type txn struct {
	id          string
	op          channel.Op
	orderNo     string
	original    string
	status      channel.Status
	amount      uint64
	currency    string
	completedAt time.Time // UTC
	// fault is how the statement misreports it (FaultLong: the txn is the statement's
	// invention); shown is the amount its line shows.
	fault StatementFault
	shown uint64
}

// book holds every txn by the UTC date of its completion.
type book struct {
	ids    map[string]bool
	byDate map[string][]txn
	dirty  map[string]bool // dates with txns not yet in a written statement
}

func newBook() book {
	return book{ids: make(map[string]bool), byDate: make(map[string][]txn), dirty: make(map[string]bool)}
}

// add books t, renaming it in the unlikely case its id is taken; it returns the id.
func (b *book) add(t txn) string {
	base := t.id
	for i := 2; b.ids[t.id]; i++ {
		t.id = fmt.Sprintf("%s-%d", base, i)
	}
	b.ids[t.id] = true
	date := t.completedAt.Format(time.DateOnly)
	b.byDate[date] = append(b.byDate[date], t)
	b.dirty[date] = true
	return t.id
}

// settle decides the outcome of rec, books its txns and sends its notices.
func (s *Server) settle(rec *record) {
	s.mu.Lock()
	notices := s.settleLocked(rec)
	s.mu.Unlock()
	for _, n := range notices {
		s.notify(rec.notifyURL, n)
	}
}

func (s *Server) settleLocked(rec *record) []channel.Notice {
	r, f := rec.req, rec.fate
	now := s.cfg.Now().UTC()
	res := s.outcome(rec)
	dupPay := f.dupPay && r.Op == channel.Pay && res.Status == channel.Succeeded
	own := s.txnOf(r, f.txn(0), res, now)
	// Statement faults only on a txn that is otherwise clean, so that each is one difference.
	var long txn
	if res.Status == channel.Succeeded && !(r.Op == channel.Pay && (f.mismatch || dupPay)) {
		var longID string
		own.fault, own.shown, longID = drawStatementFault(&s.cfg, own.id, own.amount)
		if own.fault == FaultLong {
			own.fault = FaultNone
			long = txn{id: longID, op: channel.Pay, orderNo: "EXT-" + longID, status: channel.Succeeded,
				amount: own.amount, shown: own.amount, currency: own.currency, completedAt: now, fault: FaultLong}
		}
	}
	res.Txn = s.book.add(own)
	if long.id != "" {
		s.book.add(long)
	}
	rec.result = res
	notices := []channel.Notice{noticeOf(r, res.Txn, res)}
	if r.Op == channel.Pay && res.Status == channel.Succeeded {
		rec.collected += res.Amount
		if dupPay {
			id := s.book.add(s.txnOf(r, f.txn(1), res, now))
			rec.dupTxn = id
			rec.collected += res.Amount
			notices = append(notices, noticeOf(r, id, res))
		}
	}
	if f.dupCallback {
		notices = append(notices, notices[0])
	}
	s.log.Debug("settled", "op", r.Op, "order_no", r.OrderNo, "status", res.Status, "txn", res.Txn,
		"amount", res.Amount, "asked", r.Amount, "reason", res.Reason, "dup_pay", dupPay, "dup_callback", f.dupCallback)
	return notices
}

// outcome is what becomes of rec, but for its txn.
func (s *Server) outcome(rec *record) channel.Result {
	r, f := rec.req, rec.fate
	failed := func(reason string) channel.Result {
		return channel.Result{Status: channel.Failed, Reason: reason}
	}
	switch r.Op {
	case channel.Pay:
		if f.fail {
			return failed("declined by the payer's bank (simulated)")
		}
		return channel.Result{Status: channel.Succeeded, Amount: f.paidAmount(r.Amount)}
	case channel.Payout:
		if f.fail {
			return failed("refused by the payee's bank (simulated)")
		}
	case channel.Refund:
		if reason := s.refundRefusal(r); reason != "" {
			return failed(reason)
		}
		if f.fail {
			return failed("refused by the payer's bank (simulated)")
		}
		s.records[r.Original].refunded += r.Amount
	}
	return channel.Result{Status: channel.Succeeded, Amount: r.Amount}
}

// refundRefusal is why refund r cannot be made, or "": it must name a succeeded Pay in the
// same currency with at least r.Amount of what it collected (both payments of a duplicate
// pay) not yet refunded.
func (s *Server) refundRefusal(r channel.Request) string {
	orig := s.records[r.Original]
	switch {
	case orig == nil || orig.req.Op != channel.Pay:
		return fmt.Sprintf("original %q is not a pay", r.Original)
	case orig.result.Status != channel.Succeeded:
		return fmt.Sprintf("original %q is %s, not succeeded", r.Original, orig.result.Status)
	case orig.req.Currency != r.Currency:
		return fmt.Sprintf("original %q is in %s, not %s", r.Original, orig.req.Currency, r.Currency)
	case r.Amount > orig.collected-orig.refunded:
		return fmt.Sprintf("refund of %d exceeds the %d left of original %q (%d collected, %d refunded)",
			r.Amount, orig.collected-orig.refunded, r.Original, orig.collected, orig.refunded)
	}
	return ""
}

func (s *Server) txnOf(r channel.Request, id string, res channel.Result, at time.Time) txn {
	return txn{id: id, op: r.Op, orderNo: r.OrderNo, original: r.Original, status: res.Status,
		amount: res.Amount, shown: res.Amount, currency: r.Currency, completedAt: at}
}

func noticeOf(r channel.Request, txn string, res channel.Result) channel.Notice {
	return channel.Notice{Op: r.Op, OrderNo: r.OrderNo, Txn: txn, Status: res.Status, Amount: res.Amount, BizID: r.BizID}
}

// A PayFault is a succeeded Pay the channel collected wrongly: twice (DupPay, under a second
// txn) or another amount than asked (Mismatch, Paid).
type PayFault struct {
	OrderNo  string
	BizID    string
	DupPay   bool
	Mismatch bool
	Asked    uint64
	Paid     uint64 // per collection
	Txns     []string
}

// PayFaults lists the Pays settled so far that collected twice or another amount, by
// order_no: the duplicate payments and amount mismatches the ledger should record.
func (s *Server) PayFaults() []PayFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PayFault
	for no, rec := range s.records {
		if rec.req.Op != channel.Pay || rec.result.Status != channel.Succeeded || !(rec.fate.dupPay || rec.fate.mismatch) {
			continue
		}
		pf := PayFault{OrderNo: no, BizID: rec.req.BizID, DupPay: rec.fate.dupPay, Mismatch: rec.fate.mismatch, Asked: rec.req.Amount,
			Paid: rec.result.Amount, Txns: []string{rec.result.Txn}}
		if rec.fate.dupPay {
			pf.Txns = append(pf.Txns, rec.dupTxn)
		}
		pf.Mismatch = pf.Mismatch && pf.Paid != pf.Asked
		out = append(out, pf)
	}
	slices.SortFunc(out, func(a, b PayFault) int { return cmp.Compare(a.OrderNo, b.OrderNo) })
	return out
}
