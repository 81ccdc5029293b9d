// Package recon is near-real-time reconciliation: a pure, deterministic matcher that joins the
// event stream's payment orders and ledger transfers by business id within a window of event
// time, and says, when a biz id's window closes, whether it matched (payment.Reconcile's
// three-way rules) or what is still unmatched.
//
// The matcher reads no clock and does no I/O: time is the largest event time it was given
// (an order's Updated, a transfer's or posting's Timestamp), or a time passed to Advance.
//
// # Windows
//
// A biz id's window opens at its first event the matcher takes (sequence First, event time
// Opened) and closes once the matcher's time reaches Opened + Window. An event whose time is
// at or past a window's end closes it first, then opens a new window of its own. When a window
// closes with an order of the biz id not final, the window is extended once, by Window from
// the close (counted as pending); at the second close an order that still waits on its channel
// (UNKNOWN, or sent and awaiting its outcome) is reported as KindPending, not as an anomaly,
// and one that waits on nothing the channel owes is KindNotFinal.
//
// # What a closed window reports (in this order)
//
//  1. Every exception record an order opened within the window (its index was not on the
//     order's first version in the window): one finding of the record's kind
//     (duplicate_payment, amount_mismatch, status_conflict, settle_refused). The channel and the
//     order disagreed, even though the books hold it in suspense.
//  2. The three-way check (payment.Reconcile) over the orders' last versions and the
//     transfers' last states seen: KindLedger with its differences. When the window did not
//     see the whole life of what it holds (an order first seen past its first version, a
//     payment transfer of an order not seen), it is Partial: the stream alone cannot tell a
//     transfer committed before the window from a missing one, so the host checks the biz id
//     against the store (Confirm) instead.
//  3. KindPending or KindNotFinal, as above.
//
// A window with no finding and every order final is matched.
//
// # Bounds
//
// At most Config.BizMax biz ids are tracked. A new one beyond that evicts the oldest window,
// reported as KindOverflow (never silently): its events so far are not reconciled.
package recon

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// Limits and defaults (units last).
const (
	// WindowDefault is the default window, in nanoseconds of event time (2 minutes).
	WindowDefault = 2 * 60 * 1_000_000_000
	// WindowMin and WindowMax bound Config.Window (1 second to 1 day).
	WindowMin = 1_000_000_000
	WindowMax = 24 * 3600 * 1_000_000_000
	// BizMaxDefault is how many biz ids are tracked at once by default (about 1 KB each).
	BizMaxDefault = 100_000
	// BizMaxLimit is the largest Config.BizMax.
	BizMaxLimit = 10_000_000
	// OrdersPerBizMax and TransfersPerBizMax bound what one biz id's window keeps; beyond
	// them the window closes at once as KindOverflow.
	OrdersPerBizMax    = 64
	TransfersPerBizMax = 64 * 48
	// DifferencesMax is the most differences one finding lists (it counts the rest in More).
	DifferencesMax = 32
)

// Kind is the kind of a finding.
type Kind string

// The kinds of Finding.
const (
	KindLedger        Kind = "ledger"
	KindDuplicate     Kind = "duplicate_payment"
	KindAmount        Kind = "amount_mismatch"
	KindStatus        Kind = "status_conflict"
	KindSettleRefused Kind = "settle_refused"
	KindNotFinal      Kind = "not_final"
	KindPending       Kind = "pending"
	KindOverflow      Kind = "overflow"
)

// Kinds lists every kind, in the order a closed window reports them.
var Kinds = []Kind{KindDuplicate, KindAmount, KindStatus, KindSettleRefused, KindLedger, KindPending, KindNotFinal,
	KindOverflow}

// ParseKind is the kind named s.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, slices.Contains(Kinds, k)
}

// Anomaly reports whether the kind is a disagreement (KindPending is not: the order waits).
func (k Kind) Anomaly() bool { return k != KindPending }

func exceptionKind(k payment.ExceptionKind) Kind {
	switch k {
	case payment.DuplicatePayment:
		return KindDuplicate
	case payment.AmountMismatch:
		return KindAmount
	case payment.StatusConflict:
		return KindStatus
	}
	return KindSettleRefused
}

// Finding is one thing still unmatched when a biz id's window closed. Its identity is
// (BizID, Kind, First): the same events give the same findings after a restart.
type Finding struct {
	BizID  string
	Kind   Kind
	First  uint64 // the sequence of the window's first event
	Closed uint64 // the sequence of the last event taken before it closed
	Orders []uint64
	// Differences say exactly what disagrees (as expected, as found); More counts those
	// beyond DifferencesMax.
	Differences []payment.Difference
	More        int
}

// Window is a closed window: what it saw, and what it found.
type Window struct {
	BizID         string
	First, Closed uint64
	Orders        int
	Transfers     int
	// Partial: the window did not see the whole life of its orders; its three-way verdict
	// needs the store (Confirm).
	Partial  bool
	Final    bool // every order of the window is final
	Findings []Finding
}

// Matched reports whether the window matched: every order final and nothing found.
func (w *Window) Matched() bool { return w.Final && !w.Partial && len(w.Findings) == 0 }

func (w *Window) add(kind Kind, orders []uint64, diffs []payment.Difference) {
	f := Finding{BizID: w.BizID, Kind: kind, First: w.First, Closed: w.Closed, Orders: orders}
	if len(diffs) > DifferencesMax {
		f.More = len(diffs) - DifferencesMax
		diffs = diffs[:DifferencesMax]
	}
	f.Differences = slices.Clone(diffs)
	w.Findings = append(w.Findings, f)
}

// Config configures a Matcher.
type Config struct {
	Window uint64 // nanoseconds of event time; 0: WindowDefault
	BizMax int    // biz ids tracked at once; 0: BizMaxDefault
	// StoreVerdict: every closed window is Partial, its three-way verdict left to the host
	// (Confirm). For a host without the server's payment setup (a client of the event
	// stream: the chart, codes and channel positions the check builds the expected transfers
	// from), which may then pass a nil setup to New.
	StoreVerdict bool
}

// Validate checks the configuration, filling in defaults.
func (c *Config) Validate() error {
	if c.Window == 0 {
		c.Window = WindowDefault
	}
	if c.BizMax == 0 {
		c.BizMax = BizMaxDefault
	}
	switch {
	case c.Window < WindowMin || c.Window > WindowMax:
		return fmt.Errorf("recon: the window must be 1s to 24h, not %dns", c.Window)
	case c.BizMax < 1 || c.BizMax > BizMaxLimit:
		return fmt.Errorf("recon: the biz ids tracked must be 1 to %d, not %d", BizMaxLimit, c.BizMax)
	}
	return nil
}

// Stats are the matcher's counts, read by the host's metrics adapter.
type Stats struct {
	Matched   uint64
	Unmatched map[Kind]uint64 // findings by kind
	Tracked   int             // biz ids with an open window
	Pending   int             // of them, in their extension (an order not final at the first close)
	Overflow  uint64          // windows evicted by BizMax or the per-biz bounds
	Skipped   uint64          // events of windows a previous run closed already (Skip)
}

type orderSeen struct {
	first  uint32 // the version first seen
	opened int    // exceptions on the first version seen
	o      *payment.Order
	// openedIn bit k: an event of exception k showed it opened in that commit (its Created
	// is the order's Updated), whichever version of the order the window saw first.
	openedIn uint64
}

type biz struct {
	id        string
	first     uint64 // sequence of the first event
	last      uint64 // sequence of the last event taken
	opened    uint64 // event time of the first event
	deadline  uint64
	extended  bool
	orders    map[uint64]*orderSeen
	transfers map[uint64]ledger.Transfer
	queued    bool // in the extension queue (else the primary one)
}

// Matcher joins events by biz id. Not safe for concurrent use.
type Matcher struct {
	s     *payment.Setup
	cfg   Config
	now   uint64
	open  map[string]*biz
	queue []*biz // primary windows, by opening (so by deadline)
	ext   []*biz // extended windows, by extension (so by deadline)
	skip  map[string]uint64
	out   []Window
	stats Stats
}

// New makes a matcher.
func New(s *payment.Setup, cfg Config) (*Matcher, error) {
	if s == nil && !cfg.StoreVerdict {
		return nil, errors.New("recon: no payment setup")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Matcher{s: s, cfg: cfg, open: map[string]*biz{}, skip: map[string]uint64{},
		stats: Stats{Unmatched: map[Kind]uint64{}}}, nil
}

// Skip tells the matcher that a previous run closed a window of biz id that took its events up
// to sequence through: events of it up to there are ignored (they were reconciled already).
func (m *Matcher) Skip(bizID string, through uint64) {
	m.skip[bizID] = max(m.skip[bizID], through)
}

// Stats are the matcher's counts (Unmatched is a copy).
func (m *Matcher) Stats() Stats {
	s := m.stats
	s.Unmatched = make(map[Kind]uint64, len(m.stats.Unmatched))
	for k, v := range m.stats.Unmatched {
		s.Unmatched[k] = v
	}
	s.Tracked = len(m.open)
	return s
}

// Now is the matcher's time: the largest event time (or Advance time) it was given.
func (m *Matcher) Now() uint64 { return m.now }

// Oldest is the first sequence of the oldest open window (0: none): a host that restarts
// from it sees again every event of every window still open.
func (m *Matcher) Oldest() uint64 {
	var oldest uint64
	for _, q := range [][]*biz{m.queue, m.ext} {
		for _, b := range q {
			if b != nil && (oldest == 0 || b.first < oldest) {
				oldest = b.first
			}
		}
	}
	return oldest
}

// Take hands over the windows closed since the last Take, in the order they closed.
func (m *Matcher) Take() []Window {
	out := m.out
	m.out = nil
	return out
}

// Advance moves the matcher's time to now (never back) and closes the windows that ended.
func (m *Matcher) Advance(now uint64) {
	if now > m.now {
		m.now = now
	}
	m.closeDue()
}

// Posting takes a posting event: only its time matters (it carries no biz id).
func (m *Matcher) Posting(seq uint64, p *ledger.Posting) { m.Advance(p.Timestamp) }

// Transfer takes a transfer event (a transfer record written: new, or its state changed).
func (m *Matcher) Transfer(seq uint64, t *ledger.Transfer) {
	m.Advance(t.Timestamp)
	b := m.take(seq, t.BizID)
	if b == nil {
		return
	}
	if _, ok := b.transfers[t.ID]; !ok && len(b.transfers) >= TransfersPerBizMax {
		m.evict(b, fmt.Sprintf("more than %d transfers in the window", TransfersPerBizMax))
		return
	}
	b.transfers[t.ID] = *t
}

// Order takes an order event: the order as a commit wrote it, and exception >= 0 when the
// event is about its exception record of that index.
func (m *Matcher) Order(seq uint64, o *payment.Order, exception int) {
	m.Advance(o.Updated)
	b := m.take(seq, o.BizID)
	if b == nil {
		return
	}
	seen := b.orders[o.ID]
	if seen == nil {
		if len(b.orders) >= OrdersPerBizMax {
			m.evict(b, fmt.Sprintf("more than %d orders in the window", OrdersPerBizMax))
			return
		}
		seen = &orderSeen{first: o.Version, opened: len(o.Exceptions)}
		b.orders[o.ID] = seen
	}
	if o.Version < seen.first { // out of order within the window: the earliest version counts
		seen.first, seen.opened = o.Version, len(o.Exceptions)
	}
	if seen.o == nil || o.Version >= seen.o.Version {
		seen.o = clone(o)
	}
	if exception >= 0 && exception < len(o.Exceptions) && exception < 64 && o.Exceptions[exception].Created == o.Updated {
		seen.openedIn |= 1 << exception
	}
}

// take finds (or opens) the window of biz id for an event at seq; nil when the event is not
// to be joined (no biz id, or a window of a previous run took it).
func (m *Matcher) take(seq uint64, id string) *biz {
	if id == "" {
		return nil
	}
	if through, ok := m.skip[id]; ok {
		if seq <= through {
			m.stats.Skipped++
			return nil
		}
		delete(m.skip, id)
	}
	b := m.open[id]
	if b == nil {
		if len(m.open) >= m.cfg.BizMax {
			m.evictOldest()
		}
		b = &biz{id: id, first: seq, opened: m.now, deadline: m.now + m.cfg.Window,
			orders: map[uint64]*orderSeen{}, transfers: map[uint64]ledger.Transfer{}}
		m.open[id] = b
		m.queue = append(m.queue, b)
	}
	b.last = seq
	return b
}

// closeDue closes every window whose deadline the matcher's time reached.
func (m *Matcher) closeDue() {
	for {
		var b *biz
		switch {
		case len(m.queue) > 0 && m.queue[0] == nil:
			m.queue = m.queue[1:]
			continue
		case len(m.ext) > 0 && m.ext[0] == nil:
			m.ext = m.ext[1:]
			continue
		case len(m.queue) > 0 && m.queue[0].deadline <= m.now:
			b, m.queue = m.queue[0], m.queue[1:]
		case len(m.ext) > 0 && m.ext[0].deadline <= m.now:
			b, m.ext = m.ext[0], m.ext[1:]
			m.stats.Pending--
		default:
			return
		}
		m.close(b)
	}
}

func (m *Matcher) close(b *biz) {
	final := true
	for _, s := range b.orders {
		final = final && s.o.State.Final()
	}
	if !final && !b.extended {
		b.extended, b.queued = true, true
		b.deadline = m.now + m.cfg.Window
		m.ext = append(m.ext, b)
		m.stats.Pending++
		return
	}
	delete(m.open, b.id)
	w := m.verdict(b)
	w.Final = final
	m.emit(w)
}

// verdict is what a closed window found (see the package comment for the order).
func (m *Matcher) verdict(b *biz) Window {
	w := Window{BizID: b.id, First: b.first, Closed: b.last, Orders: len(b.orders), Transfers: len(b.transfers)}
	ids := make([]uint64, 0, len(b.orders))
	for id := range b.orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	orders := make([]*payment.Order, len(ids))
	for i, id := range ids {
		orders[i] = b.orders[id].o
	}
	// 1. Exception records opened within the window, by kind.
	byKind := map[Kind][]payment.Difference{}
	kindOrders := map[Kind][]uint64{}
	for _, id := range ids {
		s := b.orders[id]
		for k := range s.o.Exceptions {
			if k < s.opened && (k >= 64 || s.openedIn&(1<<k) == 0) {
				continue // opened before the window
			}
			x := &s.o.Exceptions[k]
			kind := exceptionKind(x.Kind)
			byKind[kind] = append(byKind[kind], exceptionDiff(s.o, k, x))
			if !slices.Contains(kindOrders[kind], id) {
				kindOrders[kind] = append(kindOrders[kind], id)
			}
		}
	}
	for _, kind := range []Kind{KindDuplicate, KindAmount, KindStatus, KindSettleRefused} {
		if d := byKind[kind]; len(d) > 0 {
			w.add(kind, kindOrders[kind], d)
		}
	}
	// 2. The three-way check, when the window saw the whole life of what it holds.
	w.Partial = m.cfg.StoreVerdict || partial(b)
	if !w.Partial {
		transfers := make([]ledger.Transfer, 0, len(b.transfers))
		for _, t := range b.transfers {
			transfers = append(transfers, t)
		}
		slices.SortFunc(transfers, func(x, y ledger.Transfer) int { return cmpU64(x.ID, y.ID) })
		if diffs := payment.Reconcile(m.s, orders, transfers); len(diffs) > 0 {
			w.add(KindLedger, ids, diffs)
		}
	}
	// 3. Orders still not final at the second close.
	var pending, stuck []payment.Difference
	var pendingIDs, stuckIDs []uint64
	for _, o := range orders {
		if o.State.Final() {
			continue
		}
		d := payment.Difference{Kind: payment.DiffState, Order: o.ID, Expected: "a final state within the window",
			Found: fmt.Sprintf("%v (stage %v, outcome %v, queries %d)", o.State, o.Stage, o.Outcome, o.Queries)}
		if waitsOnChannel(o) {
			pending, pendingIDs = append(pending, d), append(pendingIDs, o.ID)
		} else {
			stuck, stuckIDs = append(stuck, d), append(stuckIDs, o.ID)
		}
	}
	if len(pending) > 0 {
		w.add(KindPending, pendingIDs, pending)
	}
	if len(stuck) > 0 {
		w.add(KindNotFinal, stuckIDs, stuck)
	}
	return w
}

// partial reports whether the window missed part of the life of what it holds: an order first
// seen past its first version, or a transfer of an order it did not see.
func partial(b *biz) bool {
	for _, s := range b.orders {
		if s.first != 1 {
			return true
		}
	}
	for id := range b.transfers {
		if order, _, ok := payment.StepOf(id); ok && b.orders[order] == nil {
			return true
		}
	}
	return false
}

// waitsOnChannel reports whether the order waits for its channel's answer (a query-back).
func waitsOnChannel(o *payment.Order) bool {
	return o.State == payment.Unknown || (o.State == payment.Processing && o.Stage == payment.StageAwait)
}

func exceptionDiff(o *payment.Order, k int, x *payment.Exception) payment.Difference {
	d := payment.Difference{Kind: payment.DiffChannel, Order: o.ID,
		Found: fmt.Sprintf("exception %d %v: txn %s amount %d (%v)", k, x.Kind, x.Txn, x.Amount, x.Step)}
	switch x.Kind {
	case payment.AmountMismatch:
		d.Expected = fmt.Sprintf("the channel moving the order's %d", o.Amount)
	case payment.DuplicatePayment:
		d.Expected = fmt.Sprintf("one channel transaction (%s)", o.Txn)
	case payment.StatusConflict:
		d.Expected = fmt.Sprintf("the channel's status agreeing with the order (%v)", o.State)
	default:
		d.Kind = payment.DiffException
		d.Expected = "the ledger taking the outcome's postings"
	}
	if x.Note != "" {
		d.Found += ": " + strings.TrimSpace(x.Note)
	}
	return d
}

func (m *Matcher) emit(w Window) {
	if w.Matched() {
		m.stats.Matched++
	}
	for _, f := range w.Findings {
		m.stats.Unmatched[f.Kind]++
	}
	m.out = append(m.out, w)
}

// Confirm completes a Partial window with the three-way differences the store has for the biz
// id now (payment.Reconcile over its durable orders and transfers), and counts it.
func (m *Matcher) Confirm(w *Window, diffs []payment.Difference) {
	if !w.Partial {
		return
	}
	w.Partial = false
	if len(diffs) > 0 {
		w.add(KindLedger, nil, diffs)
		m.stats.Unmatched[KindLedger]++
	}
	slices.SortStableFunc(w.Findings, func(a, b Finding) int {
		return slices.Index(Kinds, a.Kind) - slices.Index(Kinds, b.Kind)
	})
	if w.Matched() {
		m.stats.Matched++
	}
}

// evictOldest closes the oldest open window as KindOverflow.
func (m *Matcher) evictOldest() {
	var oldest *biz
	for _, q := range [][]*biz{m.queue, m.ext} {
		for _, b := range q {
			if b != nil {
				if oldest == nil || b.first < oldest.first {
					oldest = b
				}
				break
			}
		}
	}
	if oldest != nil {
		m.evict(oldest, fmt.Sprintf("more than %d biz ids tracked at once", m.cfg.BizMax))
	}
}

// evict closes b at once as KindOverflow: what it saw so far is not reconciled.
func (m *Matcher) evict(b *biz, why string) {
	q := &m.queue
	if b.queued {
		q = &m.ext
		m.stats.Pending--
	}
	if i := slices.Index(*q, b); i >= 0 {
		(*q)[i] = nil
	}
	delete(m.open, b.id)
	m.stats.Overflow++
	w := Window{BizID: b.id, First: b.first, Closed: b.last, Orders: len(b.orders), Transfers: len(b.transfers)}
	ids := make([]uint64, 0, len(b.orders))
	for id := range b.orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	w.add(KindOverflow, ids, []payment.Difference{{Kind: payment.DiffUnmatched,
		Expected: "the window reconciled when it closes",
		Found: fmt.Sprintf("evicted unreconciled (%s) with %d orders and %d transfers seen", why, len(b.orders),
			len(b.transfers))}})
	m.emit(w)
}

func clone(o *payment.Order) *payment.Order {
	c := *o
	c.Instruments = slices.Clone(o.Instruments)
	c.Exceptions = slices.Clone(o.Exceptions)
	return &c
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
