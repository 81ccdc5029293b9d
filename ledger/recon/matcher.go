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
// Windows are about payment orders. A biz id's window opens at an order event of the biz id,
// or at a transfer of a payment order (its id is payment.TransferID's), whichever comes first
// (sequence First, event time Opened), and closes once the matcher's time reaches
// Opened + Window. A plain ledger transfer (a ledger client's, not a payment order's) joins the
// open window of its biz id when there is one, and is then judged by the three-way rules (a
// transfer with no order is a difference); when there is none it is ignored: not tracked, no
// finding. A payment order without a biz id is joined by its order key instead (OrderKey:
// "order", U+001F, its id), with the transfers of its steps (they carry no biz id either); the
// key names its window and findings where a biz id would. No payment order's biz id is such a
// key (it must be printable), and a plain transfer carrying one as its biz id joins nothing;
// plain transfers without a biz id are not joined. An event whose time is at or past a window's end closes it first, then opens a new
// window of its own. When a window closes with an order of the biz id not final, the window
// is extended once, by Window from the close (counted as pending); at the second close an
// order that still waits on its channel (UNKNOWN, or sent and awaiting its outcome) is
// reported as KindPending, not as an anomaly, and one that waits on nothing the channel owes
// is KindNotFinal.
//
// # Whole life seen
//
// The window saw the whole life of an order when the order was created at or after the biz
// id's floor: the time of the first event the matcher took (it was made when a host started
// following, from its checkpoint, or after a gap: Gap), raised to the matcher's time when a
// window of the biz id closed (or a previous run's window of it was skipped). An order
// created earlier may have events the window did not see.
//
// # What a closed window reports (in this order)
//
//  1. Every exception record an order opened within the window, one finding per kind
//     (duplicate_payment, amount_mismatch, status_conflict, settle_refused): the channel and
//     the order disagreed, even though the books hold it in suspense. The stream names the
//     records each commit opened or changed (exception events). When it also says whether
//     the commit opened the record (OrderExact: the server's stream, payment log records of
//     version 3 on), a record is reported exactly when an event of it in the window says its
//     commit opened it: no timestamp enters. Otherwise (Order: records logged before, or a
//     client of the wire stream, which does not carry it) a record is opened within the
//     window when its order's whole life was seen, when an earlier version of the order in
//     the window did not have it, or when its first exception event in the window shows a
//     record created at or after the biz id's floor; that rule can miss a record stamped
//     before a close or a restart's floor but committed after it.
//  2. The three-way check (payment.Reconcile) over the orders' last versions and the
//     transfers' last states seen: KindLedger with its differences. When the window did not
//     see the whole life of what it holds (an order created before the floor, a payment
//     transfer of an order not seen, a gap in the stream), it is Partial: the stream alone
//     cannot tell a transfer committed before the window from a missing one, so the host
//     checks the biz id against the store (Confirm) instead. A ledger finding is named (its
//     First) by a digest of its differences (DiffDigest), whether the stream's check or the
//     store's made it: the same differences found again are the same finding.
//  3. KindPending or KindNotFinal, as above.
//
// A window with no finding and every order final is matched.
//
// # Bounds
//
// At most Config.BizMax biz ids have an open window; a new one beyond that evicts the oldest
// window, reported as KindOverflow (never silently). At most OrdersPerBizMax orders and
// TransfersPerBizMax transfers are kept for one window, and TrackedMax orders and transfers
// across all windows: the window that would pass one of them is overflowed: what it kept is
// dropped at once, its further events are only counted, and it reports one KindOverflow
// finding when it closes. Plain transfers have a smaller bound of their own,
// PlainPerBizMax a window: past it the window drops the plain transfers it kept, tracks no
// more (counted in Stats.PlainDropped) and is Partial, its three-way verdict the store's;
// its orders' exception records are still reported, and its orders still kept.
package recon

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// OrderKeyPrefix begins the join key of a payment order without a biz id (OrderKey): the
// unit separator (U+001F) is not printable, and a payment order's biz id must be printable
// (payment.ResultBizIDNotPrintable), so no order's biz id is such a key.
const OrderKeyPrefix = "order\x1f"

// OrderKey is the join key of payment order id when it has no biz id: its window, findings and
// closed windows are named by it where a biz id would be ("order", U+001F, the id in decimal).
func OrderKey(id uint64) string { return OrderKeyPrefix + strconv.FormatUint(id, 10) }

// OrderOfKey is the order an OrderKey names.
func OrderOfKey(key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, OrderKeyPrefix)
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	id, err := strconv.ParseUint(rest, 10, 64)
	return id, err == nil
}

// Limits and defaults (units last).
const (
	// WindowDefault is the default window, in nanoseconds of event time (2 minutes).
	WindowDefault = 2 * 60 * 1_000_000_000
	// WindowMin and WindowMax bound Config.Window (1 second to 1 day).
	WindowMin = 1_000_000_000
	WindowMax = 24 * 3600 * 1_000_000_000
	// BizMaxDefault is how many biz ids have an open window at once by default.
	BizMaxDefault = 100_000
	// BizMaxLimit is the largest Config.BizMax.
	BizMaxLimit = 10_000_000
	// OrdersPerBizMax and TransfersPerBizMax bound what one window keeps; TrackedMax bounds
	// the orders and transfers kept across every open window. A window that would pass one
	// of them is overflowed (see the package comment). With about 0.5 KB per order or
	// transfer kept, TrackedMax bounds them to about 0.5 GB.
	OrdersPerBizMax    = 64
	TransfersPerBizMax = 64 * 48
	TrackedMax         = 1_000_000
	// PlainPerBizMax bounds the plain transfers (not a payment order's) one window tracks:
	// past it the window drops them, tracks no more, and is Partial (its three-way verdict is
	// the store's), so that a ledger client's transfers carrying a payment's biz id cannot
	// overflow the payment's window and hide its own findings.
	PlainPerBizMax = 256
	// FloorsMax is how many biz ids' floors (the time their last window closed) are
	// remembered; the oldest one forgotten raises the floor of every biz id not remembered.
	FloorsMax = 1_000_000
	// SkipMax is how many windows of a previous run (Skip) the matcher holds at once.
	SkipMax = 1_000_000
	// DifferencesMax is the most differences one finding lists (it counts the rest in More).
	DifferencesMax = 32
	// StoreFindingBit marks the First of a ledger finding (the stream's three-way check or
	// the store's, Confirm): its First is a digest of its differences, not a sequence, so the
	// same differences found again, by either check or a later window, are the same finding.
	StoreFindingBit = 1 << 63
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
	// KindUnverifiable: the window was partial and the store's three-way check of its biz id
	// could not be made (too large, or failing past the host's retries): its three-way
	// verdict is unknown; the differences say why.
	KindUnverifiable Kind = "unverifiable"
)

// Kinds lists every kind, in the order a closed window reports them.
var Kinds = []Kind{KindDuplicate, KindAmount, KindStatus, KindSettleRefused, KindLedger, KindUnverifiable,
	KindPending, KindNotFinal, KindOverflow}

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
// (BizID, Kind, First): the same events give the same findings after a restart. First is the
// sequence of the window's first event, except for a ledger finding, whose First is the
// digest of its differences (StoreFindingBit set), whether the stream's three-way check or
// the store's (Confirm) made it.
type Finding struct {
	BizID  string
	Kind   Kind
	First  uint64
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
	OrderIDs      []uint64 // the orders it saw, ascending
	// Partial: the window did not see the whole life of its orders; its three-way verdict
	// needs the store (Confirm).
	Partial  bool
	Final    bool // every order of the window is final
	Findings []Finding
}

// Matched reports whether the window matched: every order final and nothing found.
func (w *Window) Matched() bool { return w.Final && !w.Partial && len(w.Findings) == 0 }

func (w *Window) add(kind Kind, orders []uint64, diffs []payment.Difference) {
	w.addAt(kind, w.First, orders, diffs)
}

func (w *Window) addAt(kind Kind, first uint64, orders []uint64, diffs []payment.Difference) {
	f := Finding{BizID: w.BizID, Kind: kind, First: first, Closed: w.Closed, Orders: orders}
	if len(diffs) > DifferencesMax {
		f.More = len(diffs) - DifferencesMax
		diffs = diffs[:DifferencesMax]
	}
	f.Differences = slices.Clone(diffs)
	w.Findings = append(w.Findings, f)
	slices.SortStableFunc(w.Findings, func(a, b Finding) int {
		return slices.Index(Kinds, a.Kind) - slices.Index(Kinds, b.Kind)
	})
}

// Config configures a Matcher.
type Config struct {
	Window uint64 // nanoseconds of event time; 0: WindowDefault
	BizMax int    // biz ids with an open window at once; 0: BizMaxDefault
	// StoreVerdict: every closed window is Partial, its three-way verdict left to the host
	// (Confirm). For a host without the server's payment setup (a client of the event
	// stream: the chart, codes and channel positions the check builds the expected transfers
	// from), which may then pass a nil setup to New.
	StoreVerdict bool
	// KeptMax bounds the orders and transfers kept across the open windows; 0: TrackedMax.
	KeptMax int
	// SkipMax bounds the windows of a previous run the matcher holds (Skip), and so the
	// windows a host may record past its checkpoint; 0: SkipMax (tests lower it).
	SkipMax int
}

// Validate checks the configuration, filling in defaults.
func (c *Config) Validate() error {
	if c.Window == 0 {
		c.Window = WindowDefault
	}
	if c.BizMax == 0 {
		c.BizMax = BizMaxDefault
	}
	if c.KeptMax == 0 {
		c.KeptMax = TrackedMax
	}
	if c.SkipMax == 0 {
		c.SkipMax = SkipMax
	}
	switch {
	case c.Window < WindowMin || c.Window > WindowMax:
		return fmt.Errorf("recon: the window must be 1s to 24h, not %dns", c.Window)
	case c.BizMax < 1 || c.BizMax > BizMaxLimit:
		return fmt.Errorf("recon: the biz ids tracked must be 1 to %d, not %d", BizMaxLimit, c.BizMax)
	case c.KeptMax < 1 || c.KeptMax > TrackedMax:
		return fmt.Errorf("recon: the orders and transfers kept must be 1 to %d, not %d", TrackedMax, c.KeptMax)
	case c.SkipMax < 1 || c.SkipMax > SkipMax:
		return fmt.Errorf("recon: the windows to skip must be 1 to %d, not %d", SkipMax, c.SkipMax)
	}
	return nil
}

// Stats are the matcher's counts, read by the host's metrics adapter.
type Stats struct {
	Matched   uint64
	Unmatched map[Kind]uint64 // findings by kind
	Tracked   int             // biz ids with an open window
	Kept      int             // orders and transfers kept across the open windows (at most TrackedMax)
	Pending   int             // of them, in their extension (an order not final at the first close)
	Overflow  uint64          // windows overflowed (BizMax, the per-window bounds, TrackedMax)
	Skipped   uint64          // events of windows a previous run closed already (Skip)
	Ignored   uint64          // plain transfers with a biz id and no open window (not tracked)
	Dropped   uint64          // events of overflowed windows (counted only)
	// PlainDropped: plain transfers a window did not track past PlainPerBizMax (its verdict
	// left to the store).
	PlainDropped uint64
	Gaps         uint64 // gaps in the stream (Gap): the open windows were made partial
}

type orderSeen struct {
	first  uint32 // the earliest version seen in the window
	opened int    // exception records on the earliest version seen
	o      *payment.Order
	// openedIn bit k: the first exception event of record k in the window showed it opened
	// within the window (its record was created at or after the biz id's floor).
	openedIn uint64
	// excSeen bit k: an exception event of record k was seen in the window.
	excSeen uint64
	// exactKnown bit k: an Exact exception event of record k was seen (the stream said
	// whether its commit opened it); exactOpened bit k: one said it opened it.
	exactKnown, exactOpened uint64
	// legacy: an event of the order in the window was not Exact (logged before the stream
	// said which records a commit opened): records the stream said nothing exact about are
	// judged by the timestamp rule.
	legacy bool
}

type span struct{ first, through uint64 }

type biz struct {
	id         string
	first      uint64 // sequence of the first event
	last       uint64 // sequence of the last event taken
	opened     uint64 // the matcher's time when it opened
	deadline   uint64
	floor      uint64 // orders created before it: their whole life was not seen
	extended   bool
	partial    bool // a gap in the stream (Gap)
	plain      int  // plain transfers kept
	plainOver  bool // more than PlainPerBizMax plain transfers: none kept, the verdict the store's
	overflowed string
	dropped    uint64 // events of the window not kept (overflowed)
	// overOrders and overTransfers: what an overflowed window had kept when it overflowed.
	overOrders    []uint64
	overTransfers int
	orders        map[uint64]*orderSeen
	transfers     map[uint64]ledger.Transfer
	queued        bool // in the extension queue (else the primary one)
}

// Matcher joins events by biz id. Not safe for concurrent use.
type Matcher struct {
	s     *payment.Setup
	cfg   Config
	now   uint64
	open  map[string]*biz
	queue []*biz // primary windows, by opening (so by first sequence and by deadline)
	ext   []*biz // extended windows, by extension (so by deadline)
	kept  int    // orders and transfers kept across the open windows
	// floor is the floor of every biz id not in floors; started: it was set (by the first
	// event taken since New or Gap).
	floor   uint64
	started bool
	floors  map[string]uint64
	floorsQ []floorAt // floors in the order they were set (their times ascending)
	skip    map[string][]span
	skipN   int
	out     []Window
	stats   Stats
}

type floorAt struct {
	id string
	at uint64
}

// New makes a matcher.
func New(s *payment.Setup, cfg Config) (*Matcher, error) {
	if s == nil && !cfg.StoreVerdict {
		return nil, errors.New("recon: no payment setup")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Matcher{s: s, cfg: cfg, open: map[string]*biz{}, skip: map[string][]span{}, floors: map[string]uint64{},
		stats: Stats{Unmatched: map[Kind]uint64{}}}, nil
}

// ErrSkipFull: Skip was given more than Config.SkipMax windows.
var ErrSkipFull = errors.New("recon: more closed windows to skip than the matcher holds (Config.SkipMax)")

// Skip tells the matcher that a previous run closed a window of biz id that took its events
// from sequence first through sequence through: those events of the biz id are ignored (they
// were reconciled already). Only such windows are skipped: the events of biz id outside them
// are taken. Give them in any order, before the events.
func (m *Matcher) Skip(bizID string, first, through uint64) error {
	if m.skipN >= m.cfg.SkipMax {
		return ErrSkipFull
	}
	m.skip[bizID] = append(m.skip[bizID], span{first, through})
	m.skipN++
	return nil
}

// Stats are the matcher's counts (Unmatched is a copy).
func (m *Matcher) Stats() Stats {
	s := m.stats
	s.Unmatched = make(map[Kind]uint64, len(m.stats.Unmatched))
	for k, v := range m.stats.Unmatched {
		s.Unmatched[k] = v
	}
	s.Tracked = len(m.open)
	s.Kept = m.kept
	return s
}

// Now is the matcher's time: the largest event time (or Advance time) it was given.
func (m *Matcher) Now() uint64 { return m.now }

// Oldest is the first sequence of the oldest open window (0: none): a host that restarts
// from it sees again every event of every window still open. It looks at the head of the
// primary windows (ordered by first sequence) and at the extended windows.
func (m *Matcher) Oldest() uint64 {
	if b := m.oldest(); b != nil {
		return b.first
	}
	return 0
}

func (m *Matcher) oldest() *biz {
	var oldest *biz
	for _, b := range m.queue {
		if b != nil {
			oldest = b
			break
		}
	}
	for _, b := range m.ext {
		if b != nil && (oldest == nil || b.first < oldest.first) {
			oldest = b
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

// Gap tells the matcher that events were lost before the next one (retention trimmed them
// before the host read them): every open window is made partial (its verdict is the
// store's), and the floor moves to the next event's time.
func (m *Matcher) Gap() {
	for _, b := range m.open {
		b.partial = true
	}
	m.started = false
	m.stats.Gaps++
}

// event notes an event's time: the first one since New or Gap sets the floor.
func (m *Matcher) event(t uint64) {
	if !m.started {
		m.started = true
		m.floor = max(m.floor, t)
	}
	m.Advance(t)
}

// Posting takes a posting event: only its time matters (it carries no biz id).
func (m *Matcher) Posting(seq uint64, p *ledger.Posting) { m.event(p.Timestamp) }

// Transfer takes a transfer event (a transfer record written: new, or its state changed).
func (m *Matcher) Transfer(seq uint64, t *ledger.Transfer) {
	m.event(t.Timestamp)
	order, _, ok := payment.StepOf(t.ID)
	pay := ok && !payment.IsStatementTransfer(t.ID)
	key := t.BizID
	switch {
	case key == "" && pay:
		key = OrderKey(order) // a transfer of an order without a biz id
	case !pay && strings.HasPrefix(key, OrderKeyPrefix):
		m.stats.Ignored++ // a plain transfer never joins an order's own window
		return
	}
	b := m.take(seq, key, pay)
	if b == nil {
		return
	}
	if _, had := b.transfers[t.ID]; !had {
		if !pay && (b.plainOver || b.plain >= PlainPerBizMax) {
			if !b.plainOver {
				m.dropPlain(b)
			}
			m.stats.PlainDropped++
			return
		}
		if len(b.transfers) >= TransfersPerBizMax {
			m.overflow(b, fmt.Sprintf("more than %d transfers in the window", TransfersPerBizMax))
			return
		}
		if m.kept >= m.cfg.KeptMax {
			m.overflow(b, fmt.Sprintf("more than %d orders and transfers kept across the windows", m.cfg.KeptMax))
			return
		}
		m.kept++
		if !pay {
			b.plain++
		}
	}
	b.transfers[t.ID] = *t
}

// dropPlain drops the plain transfers b kept: past PlainPerBizMax it tracks none, and its
// three-way verdict is the store's.
func (m *Matcher) dropPlain(b *biz) {
	for id := range b.transfers {
		if _, _, ok := payment.StepOf(id); !ok || payment.IsStatementTransfer(id) {
			delete(b.transfers, id)
			m.kept--
		}
	}
	b.plain, b.plainOver = 0, true
}

// Order takes an order event of a stream that does not say which exception records a commit
// opened (a payment log record of version 1 or 2, or a client of the wire stream): the order
// as a commit wrote it, and exception >= 0 when the event is about its exception record of
// that index (the commit opened or changed it). Whether a record was opened within the window
// is then inferred (see the package comment).
func (m *Matcher) Order(seq uint64, o *payment.Order, exception int) {
	m.order(seq, o, exception, false, false)
}

// OrderExact takes an order event of a stream that says which exception records each commit
// opened (events.Event.Exact): with exception >= 0, opened tells whether the commit opened the
// record (else it changed it). A record is then reported by the window exactly when an event
// of it in the window says its commit opened it.
func (m *Matcher) OrderExact(seq uint64, o *payment.Order, exception int, opened bool) {
	m.order(seq, o, exception, true, opened)
}

func (m *Matcher) order(seq uint64, o *payment.Order, exception int, exact, opened bool) {
	m.event(o.Updated)
	key := o.BizID
	if key == "" {
		key = OrderKey(o.ID)
	}
	b := m.take(seq, key, true)
	if b == nil {
		return
	}
	seen := b.orders[o.ID]
	if seen == nil {
		if len(b.orders) >= OrdersPerBizMax {
			m.overflow(b, fmt.Sprintf("more than %d orders in the window", OrdersPerBizMax))
			return
		}
		if m.kept >= m.cfg.KeptMax {
			m.overflow(b, fmt.Sprintf("more than %d orders and transfers kept across the windows", m.cfg.KeptMax))
			return
		}
		m.kept++
		seen = &orderSeen{first: o.Version, opened: len(o.Exceptions)}
		b.orders[o.ID] = seen
	}
	seen.legacy = seen.legacy || !exact
	if o.Version < seen.first { // out of order within the window: the earliest version counts
		seen.first, seen.opened = o.Version, len(o.Exceptions)
	}
	if seen.o == nil || o.Version >= seen.o.Version {
		seen.o = o.Clone()
	}
	if exception < 0 || exception >= len(o.Exceptions) || exception >= 64 {
		return
	}
	if exact {
		seen.exactKnown |= 1 << exception
		if opened {
			seen.exactOpened |= 1 << exception
		}
		return
	}
	if seen.excSeen&(1<<exception) == 0 {
		seen.excSeen |= 1 << exception
		if o.Exceptions[exception].Created >= b.floor {
			seen.openedIn |= 1 << exception
		}
	}
}

// floorOf is the floor of biz id: orders created before it were not seen whole.
func (m *Matcher) floorOf(id string) uint64 {
	return max(m.floor, m.floors[id])
}

// raise raises biz id's floor to at (a window of it closed, or was skipped).
func (m *Matcher) raise(id string, at uint64) {
	if m.floors[id] >= at {
		return
	}
	m.floors[id] = at
	m.floorsQ = append(m.floorsQ, floorAt{id, at})
	for len(m.floorsQ) > FloorsMax {
		f := m.floorsQ[0]
		m.floorsQ = m.floorsQ[1:]
		if m.floors[f.id] == f.at {
			delete(m.floors, f.id)
		}
		m.floor = max(m.floor, f.at) // forgotten: every biz id not remembered is as high
	}
	if cap(m.floorsQ) > 2*FloorsMax && len(m.floorsQ) < FloorsMax {
		m.floorsQ = slices.Clone(m.floorsQ)
	}
}

// skipped reports whether a previous run's window of biz id took the event at seq.
func (m *Matcher) skipped(seq uint64, id string) bool {
	spans := m.skip[id]
	if len(spans) == 0 {
		return false
	}
	hit := false
	kept := spans[:0]
	for _, s := range spans {
		if seq >= s.first && seq <= s.through {
			hit = true
		}
		if s.through > seq || (hit && s.through == seq) {
			kept = append(kept, s)
		}
	}
	// Spans wholly below seq are done (the stream's sequences only grow).
	m.skipN -= len(spans) - len(kept)
	if len(kept) == 0 {
		delete(m.skip, id)
	} else {
		m.skip[id] = kept
	}
	return hit
}

// take finds (or, with opens, opens) the window of biz id for an event at seq; nil when the
// event is not to be joined (no biz id, a window of a previous run took it, a plain transfer
// with no window open, or its window overflowed).
func (m *Matcher) take(seq uint64, id string, opens bool) *biz {
	if id == "" {
		return nil
	}
	if m.skipped(seq, id) {
		m.stats.Skipped++
		m.raise(id, m.now+1)
		return nil
	}
	b := m.open[id]
	if b == nil {
		if !opens {
			m.stats.Ignored++
			return nil
		}
		if len(m.open) >= m.cfg.BizMax {
			m.evictOldest()
		}
		b = &biz{id: id, first: seq, opened: m.now, deadline: m.now + m.cfg.Window, floor: m.floorOf(id),
			orders: map[uint64]*orderSeen{}, transfers: map[uint64]ledger.Transfer{}}
		m.open[id] = b
		m.queue = append(m.queue, b)
	}
	b.last = seq
	if b.overflowed != "" {
		b.dropped++
		m.stats.Dropped++
		return nil
	}
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
	if b.overflowed != "" {
		m.forget(b)
		m.emit(m.overflowWindow(b))
		return
	}
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
	m.forget(b)
	w := m.verdict(b)
	w.Final = final
	m.emit(w)
}

// forget takes b out of the open windows (not out of the queues) and raises its floor.
func (m *Matcher) forget(b *biz) {
	delete(m.open, b.id)
	m.kept -= len(b.orders) + len(b.transfers)
	// Every event the window took is at or before now: an order or exception record created
	// before it was taken by this window or an earlier one.
	m.raise(b.id, m.now)
}

// verdict is what a closed window found (see the package comment for the order).
func (m *Matcher) verdict(b *biz) Window {
	w := Window{BizID: b.id, First: b.first, Closed: b.last, Orders: len(b.orders), Transfers: len(b.transfers)}
	ids := make([]uint64, 0, len(b.orders))
	for id := range b.orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	w.OrderIDs = ids
	orders := make([]*payment.Order, len(ids))
	for i, id := range ids {
		orders[i] = b.orders[id].o
	}
	// 1. Exception records opened within the window, by kind.
	byKind := map[Kind][]payment.Difference{}
	kindOrders := map[Kind][]uint64{}
	for _, id := range ids {
		s := b.orders[id]
		whole := s.o.Created >= b.floor
		for k := range s.o.Exceptions {
			switch {
			case k < 64 && s.exactKnown&(1<<k) != 0:
				if s.exactOpened&(1<<k) == 0 {
					continue // the stream said its commits in the window only changed it
				}
			case !s.legacy:
				continue // exact events of the order, none about it: opened before the window
			case !whole && k < s.opened && (k >= 64 || s.openedIn&(1<<k) == 0):
				continue // opened before the window (the timestamp rule)
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
	w.Partial = m.cfg.StoreVerdict || b.partial || b.plainOver || partial(b)
	if !w.Partial {
		transfers := make([]ledger.Transfer, 0, len(b.transfers))
		for _, t := range b.transfers {
			transfers = append(transfers, t)
		}
		slices.SortFunc(transfers, func(x, y ledger.Transfer) int { return cmp.Compare(x.ID, y.ID) })
		if diffs := payment.Reconcile(m.s, orders, transfers); len(diffs) > 0 {
			// Named by its differences, as the store's check names its finding: the same
			// difference found by the stream and by the store is one finding.
			w.addAt(KindLedger, DiffDigest(diffs), ids, diffs)
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

// partial reports whether the window missed part of the life of what it holds: an order
// created before the biz id's floor, or a payment transfer of an order it did not see.
func partial(b *biz) bool {
	for _, s := range b.orders {
		if s.o.Created < b.floor {
			return true
		}
	}
	for id := range b.transfers {
		if order, _, ok := payment.StepOf(id); ok && !payment.IsStatementTransfer(id) && b.orders[order] == nil {
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
// id now (payment.Reconcile over its durable orders and transfers), and counts it. The ledger
// finding it makes is named by a digest of the differences (StoreFindingBit): the store
// answers for the biz id's whole history, so a later window of the biz id that gets the same
// differences makes the same finding; its orders are the orders the differences name.
func (m *Matcher) Confirm(w *Window, diffs []payment.Difference) {
	if !w.Partial {
		return
	}
	w.Partial = false
	if len(diffs) > 0 {
		w.addAt(KindLedger, DiffDigest(diffs), diffOrders(diffs), diffs)
		m.stats.Unmatched[KindLedger]++
	}
	if w.Matched() {
		m.stats.Matched++
	}
}

// Unverifiable completes a Partial window whose store check cannot be made: a
// KindUnverifiable finding saying why.
func (m *Matcher) Unverifiable(w *Window, why string) {
	if !w.Partial {
		return
	}
	w.Partial = false
	w.add(KindUnverifiable, w.OrderIDs, []payment.Difference{{Kind: payment.DiffUnmatched,
		Expected: "the store's three-way check of the biz id", Found: "not made: " + why}})
	m.stats.Unmatched[KindUnverifiable]++
}

// DiffDigest names a set of differences (in any order): StoreFindingBit and 63 bits of a
// SHA-256 of their sorted fields.
func DiffDigest(diffs []payment.Difference) uint64 {
	lines := make([]string, len(diffs))
	for i, d := range diffs {
		lines[i] = fmt.Sprintf("%q %d %d %d %q %q", d.Kind, d.Order, d.Step, d.Transfer, d.Expected, d.Found)
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return StoreFindingBit | binary.BigEndian.Uint64(h.Sum(nil))&(StoreFindingBit-1)
}

func diffOrders(diffs []payment.Difference) []uint64 {
	var ids []uint64
	for _, d := range diffs {
		if d.Order != 0 && !slices.Contains(ids, d.Order) {
			ids = append(ids, d.Order)
		}
	}
	slices.Sort(ids)
	return ids
}

// evictOldest closes the oldest open window at once as KindOverflow (BizMax).
func (m *Matcher) evictOldest() {
	if b := m.oldest(); b != nil {
		m.Evict(b.id, fmt.Sprintf("more than %d biz ids tracked at once", m.cfg.BizMax))
	}
}

// EvictOldest closes the oldest open window at once as KindOverflow (a host's bound, why);
// false when none is open.
func (m *Matcher) EvictOldest(why string) bool {
	b := m.oldest()
	if b != nil {
		m.Evict(b.id, why)
	}
	return b != nil
}

// Evict closes biz id's open window at once as KindOverflow: what it saw so far is not
// reconciled.
func (m *Matcher) Evict(id, why string) {
	b := m.open[id]
	if b == nil {
		return
	}
	q := &m.queue
	if b.queued {
		q = &m.ext
		m.stats.Pending--
	}
	if i := slices.Index(*q, b); i >= 0 {
		(*q)[i] = nil
	}
	if b.overflowed == "" {
		m.stats.Overflow++
		b.overflowed = why
	}
	m.forget(b)
	m.emit(m.overflowWindow(b))
}

// overflow marks b overflowed: what it kept is dropped now, its further events are counted,
// and it reports one KindOverflow finding when it closes.
func (m *Matcher) overflow(b *biz, why string) {
	m.stats.Overflow++
	b.overflowed = why
	b.dropped++
	m.stats.Dropped++
	m.kept -= len(b.orders) + len(b.transfers)
	b.overOrders = make([]uint64, 0, len(b.orders))
	for id := range b.orders {
		b.overOrders = append(b.overOrders, id)
	}
	slices.Sort(b.overOrders)
	b.overTransfers = len(b.transfers)
	b.orders, b.transfers = nil, nil
}

func (m *Matcher) overflowWindow(b *biz) Window {
	ids := b.overOrders
	if b.orders != nil { // evicted (BizMax) with what it kept
		b.overTransfers = len(b.transfers)
		for id := range b.orders {
			ids = append(ids, id)
		}
		slices.Sort(ids)
	}
	w := Window{BizID: b.id, First: b.first, Closed: b.last, Orders: len(ids), Transfers: b.overTransfers, OrderIDs: ids}
	w.add(KindOverflow, ids, []payment.Difference{{Kind: payment.DiffUnmatched,
		Expected: "the window reconciled when it closes",
		Found: fmt.Sprintf("overflowed unreconciled (%s) with %d orders and %d transfers seen; %d later events of it only counted",
			b.overflowed, len(ids), b.overTransfers, b.dropped)}})
	return w
}
