package payment

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// stmtBooks is what a host keeps of statement imports: the days imported, the txns seen on
// them, and the records, by (day, txn).
type stmtBooks struct {
	imported map[string]bool
	seen     map[string]string
	records  map[[2]string]*StatementRecord
}

// statement runs the statement commands of a script:
//
//	statement date=1970-01-01 [channel=bank] [signed-for=DATE]
//	<CSV lines, without the header>
//
// (signed-for: the statement is signed as the statement of DATE, verified as date's.)
//
// imports a statement as the host does: lines that are news to their order are applied as
// its callbacks (the order's effects wait like a callback's); then every line is classed and
// every money txn of the books checked for short; differences become records (one per day
// and txn: an import finds a record it made before and writes nothing), each with the
// transfer it books. resolve-statement day=D txn=T how=close|reverse resolves a record.
func (w *world) statement(t *testing.T, d *datadriven.TestData) string {
	if w.stmt == nil {
		w.stmt = &stmtBooks{imported: map[string]bool{}, seen: map[string]string{}, records: map[[2]string]*StatementRecord{}}
	}
	var out strings.Builder
	if d.Cmd == "resolve-statement" {
		r := w.stmt.records[[2]string{arg(d, "day"), arg(d, "txn")}]
		if r == nil {
			t.Fatalf("%s: no record", d.Pos)
		}
		how := map[string]Resolution{"refund": ResolveRefund, "close": ResolveClose, "reverse": ResolveReverse}[arg(d, "how")]
		fmt.Fprintf(&out, "resolve: %v\n", r.Resolve(how, arg(d, "note"), w.orders[r.Order], w.now))
		w.showRecord(&out, r)
		return out.String()
	}
	name := arg(d, "channel")
	if name == "" {
		name = "bank"
	}
	day, err := ParseDay(arg(d, "date"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Join(channel.StatementHeader, ",") + "\n" + d.Input
	if d.Input != "" {
		body += "\n"
	}
	lines, err := channel.ParseStatement(strings.NewReader(body))
	if on := arg(d, "signed-for"); on != "" {
		// The host verifies the signature for the date it imports before it reads a byte.
		secret := []byte("0123456789abcdef")
		lines, err = channel.ParseSignedStatement(secret, []byte(body), channel.SignStatement(secret, on, []byte(body)), day.Date)
	}
	if err != nil {
		return fmt.Sprintf("refused: %v\n", err)
	}
	orderOf := func(no string) *Order {
		id, _, err := ParseOrderNo(no)
		if err != nil {
			return nil
		}
		return w.orders[id]
	}
	for i := range lines {
		l := &lines[i]
		if o := orderOf(l.OrderNo); o != nil && o.Channel == name && o.StatementNews(w.s, l, w.now) {
			n := l.Notice()
			e, res := o.OnNotice(w.s, &n, w.now)
			fmt.Fprintf(&out, "applied %s %s to order %d: %v\n", l.OrderNo, l.Txn, o.ID, res)
			w.transfers[o.ID] = append(w.transfers[o.ID], e.Transfers...)
			w.calls[o.ID] = append(w.calls[o.ID], e.Calls...)
			w.show(&out, o, e)
		}
	}
	ledgers := func(c string) (uint32, bool) { return 1, c == "CNY" }
	var ms []Match
	inStatement := map[string]bool{}
	for i := range lines {
		l := &lines[i]
		o := orderOf(l.OrderNo)
		m := w.s.MatchLine(name, l, o, ledgers)
		if on, ok := w.stmt.seen[l.Txn]; ok && on != day.Date {
			m = Relisted(m, on)
		}
		ms = append(ms, m)
		inStatement[l.Txn] = true
		if o == nil || o.Channel != name {
			continue
		}
		// An open short record of the txn (on the day we recorded it) is cleared.
		for _, tx := range ChannelTxns(o) {
			if r := w.stmt.records[[2]string{DateOf(tx.At), tx.Txn}]; tx.Txn == l.Txn && r != nil && r.Clear(day.Date, w.now) {
				fmt.Fprintf(&out, "cleared %s %s:\n", r.Day, r.Txn)
				w.showRecord(&out, r)
			}
		}
	}
	w.stmt.imported[day.Date] = true
	for _, id := range slices.Sorted(maps.Keys(w.orders)) {
		o := w.orders[id]
		if o.Channel != name {
			continue
		}
		for _, tx := range ChannelTxns(o) {
			_, seen := w.stmt.seen[tx.Txn]
			switch ShortOf(day, tx, inStatement[tx.Txn], seen, func(date string) bool { return w.stmt.imported[date] }) {
			case ShortPending:
				fmt.Fprintf(&out, "pending %s %s: recorded %s\n", tx.OrderNo, tx.Txn, DateOf(tx.At))
			case ShortFound:
				m := Short(tx, o.Ledger)
				ms = append(ms, m)
			}
		}
	}
	for _, l := range lines {
		if _, ok := w.stmt.seen[l.Txn]; !ok {
			w.stmt.seen[l.Txn] = day.Date
		}
	}
	slices.SortStableFunc(ms, CompareMatches)
	for _, m := range ms {
		side := func(st channel.Status, amount uint64) string {
			if st == 0 {
				return "none"
			}
			return fmt.Sprintf("%v %d", st, amount)
		}
		fmt.Fprintf(&out, "%s %s %s: theirs %s, ours %s", m.Class, m.OrderNo, m.Txn, side(m.TheirStatus, m.TheirAmount),
			side(m.OurStatus, m.OurAmount))
		if m.In > 0 || m.Out > 0 {
			fmt.Fprintf(&out, " in=%d out=%d", m.In, m.Out)
		}
		if m.Note != "" {
			fmt.Fprintf(&out, " (%s)", m.Note)
		}
		out.WriteString("\n")
		if !m.Class.Difference() {
			continue
		}
		if m.InFlight {
			out.WriteString("  in flight: no record yet\n")
			continue
		}
		date := day.Date
		if m.Date != "" {
			date = m.Date
		}
		key := [2]string{date, m.Txn}
		if r := w.stmt.records[key]; r != nil {
			fmt.Fprintf(&out, "  record %s %s exists: %v\n", date, m.Txn, r.Step)
			continue
		}
		r := NewStatementRecord(name, date, m, w.now)
		w.stmt.records[key] = &r
		w.showRecord(&out, &r)
	}
	return out.String()
}

// showRecord prints a record and the transfer it waits for, which the script's ledger takes.
func (w *world) showRecord(out *strings.Builder, r *StatementRecord) {
	fmt.Fprintf(out, "  record %s %s %v %v", r.Day, r.Txn, r.Class, r.Step)
	if tr, ok := r.Due(w.s); ok {
		fmt.Fprintf(out, ": transfer %s -> %s %d", w.name(tr.DebitAccountID), w.name(tr.CreditAccountID), tr.Amount)
		post := map[ExceptionStep]StatementPosting{ExcBooking: PostBook, ExcUnbooking: PostReverse}[r.Step]
		if r.Clearing() {
			post = PostClear
		}
		if tr.ID != StatementPostingID(r.Channel, r.Day, r.Txn, post) || !IsStatementTransfer(tr.ID) {
			panic("a statement transfer's id is not derived from its record")
		}
		r.Booked(ledger.ResultOK, w.now)
		fmt.Fprintf(out, "; %v", r.Step)
	}
	out.WriteString("\n")
}

// TestStatementTransferID: ids derive from (channel, date, txn, reversal) alone, differ when
// any differs (the fields are length-prefixed: no two triples run together), and are never an
// order's.
func TestStatementTransferID(t *testing.T) {
	seen := map[uint64]string{}
	for _, c := range [][3]string{{"bank", "2026-11-26", "T1"}, {"bank", "2026-11-26", "T2"}, {"bank", "2026-11-27", "T1"},
		{"wallet", "2026-11-26", "T1"}, {"ban", "k2026-11-26", "T1"}, {"bank", "2026-11-2", "6T1"}} {
		for _, rev := range []bool{false, true} {
			id := StatementTransferID(c[0], c[1], c[2], rev)
			if id != StatementTransferID(c[0], c[1], c[2], rev) {
				t.Fatal("not deterministic")
			}
			if !IsStatementTransfer(id) {
				t.Fatalf("%x is not a statement transfer", id)
			}
			if _, _, ok := StepOf(id); ok {
				t.Fatalf("%x reads as an order's transfer", id)
			}
			k := fmt.Sprint(c, rev)
			if prev, dup := seen[id]; dup {
				t.Fatalf("%s and %s share id %x", prev, k, id)
			}
			seen[id] = k
		}
	}
	if IsStatementTransfer(TransferID(OrderIDMax, stepsMax-1)) {
		t.Fatal("an order's transfer reads as a statement's")
	}
}

// TestStatementRecordRefused: a posting the ledger refuses leaves the record where it was,
// noted once however often it is tried again; a later success moves it on.
func TestStatementRecordRefused(t *testing.T) {
	r := NewStatementRecord("bank", "2026-11-26", Match{Class: LineLong, Txn: "T", In: 5, Ledger: 1, Note: "no such order"}, 1)
	if r.Step != ExcBooking {
		t.Fatalf("step %v", r.Step)
	}
	r.Booked(ledger.ResultCreditAccountClosed, 2)
	r.Booked(ledger.ResultCreditAccountClosed, 3)
	if r.Step != ExcBooking || strings.Count(r.Note, "refused") != 1 || !strings.HasPrefix(r.Note, "no such order;") {
		t.Fatalf("%v %q", r.Step, r.Note)
	}
	r.Booked(ledger.ResultExists, 4)
	if r.Step != ExcOpen || r.Updated != 4 {
		t.Fatalf("%v", r.Step)
	}
	if res := r.Resolve(ResolveReverse, "", nil, 5); res != ResultNotRefundable {
		t.Fatalf("reverse with nothing to reverse: %v", res)
	}
	if res := r.Resolve(ResolveClose, strings.Repeat("x", NoteBytesMax+1), nil, 5); res != ResultNoteTooLong {
		t.Fatalf("a long note: %v", res)
	}
}

// TestStatementRecordConvert: an open short record of day D whose txn D's corrected statement
// lists with a difference of its own becomes that difference, and one posting (PostConvert,
// its own id) moves suspense from what the short booked to what the difference books; the
// same amount posts nothing; a short that booked nothing books by PostBook. Nothing else is
// converted.
func TestStatementRecordConvert(t *testing.T) {
	s := newWorld(t).s
	short := func(in, out uint64) StatementRecord {
		return NewStatementRecord("bank", "2026-11-26", Match{Class: LineShort, Txn: "RF", Order: 7, Op: channel.Refund,
			Ledger: 1, OurStatus: channel.Succeeded, OurAmount: 1000, In: in, Out: out}, 1)
	}
	line := func(c LineClass, in, out uint64) Match {
		return Match{Class: c, Txn: "RF", Order: 7, Op: channel.Refund, Ledger: 1, In: in, Out: out, Note: "line"}
	}
	ids := map[uint64]bool{}
	for _, p := range []StatementPosting{PostBook, PostReverse, PostClear, PostConvert} {
		ids[StatementPostingID("bank", "2026-11-26", "RF", p)] = true
	}
	if len(ids) != 4 {
		t.Fatal("postings share an id")
	}
	for _, c := range []struct {
		name             string
		shortIn, in, out uint64
		code             string
		amount           uint64
		post             StatementPosting
	}{
		{"refunded more", 1000, 0, 200, DefaultCodes.SuspenseOut, 1000, PostConvert},
		{"refunded less", 1000, 300, 0, DefaultCodes.SuspenseOut, 700, PostConvert},
		{"refund failed", 1000, 1000, 0, "", 0, 0},
		{"collected more (a pay short booked nothing)", 0, 50, 0, DefaultCodes.SuspenseIn, 50, PostBook},
		{"books more than the short (books changed)", 400, 1000, 0, DefaultCodes.SuspenseIn, 600, PostConvert},
	} {
		r := short(c.shortIn, 0)
		r.Booked(ledger.ResultOK, 2) // the short's booking is durable
		if !r.Convert("2026-11-26", line(LineAmount, c.in, c.out), 3) {
			t.Fatalf("%s: not converted", c.name)
		}
		if r.Class != LineAmount || r.In != c.in || r.Out != c.out || r.ShortIn != c.shortIn || r.Day != "2026-11-26" {
			t.Fatalf("%s: %+v", c.name, r)
		}
		tr, due := r.Due(s)
		if c.code == "" {
			if due || r.Step != ExcOpen {
				t.Fatalf("%s: a posting due (%v) for no delta", c.name, r.Step)
			}
			continue
		}
		if !due || tr.Amount != c.amount || tr.Code != s.ids[c.code] || tr.ID != StatementPostingID("bank", "2026-11-26", "RF", c.post) {
			t.Fatalf("%s: %+v due %v", c.name, tr, due)
		}
		if r.Booked(ledger.ResultOK, 4); r.Step != ExcOpen {
			t.Fatalf("%s: %v after its posting", c.name, r.Step)
		}
		if r.Convert("2026-11-26", line(LineStatus, 1, 0), 5) || r.Clear("2026-11-26", 5) {
			t.Fatalf("%s: converted or cleared again", c.name)
		}
	}
	for name, f := range map[string]func(r *StatementRecord, m *Match) string{
		"another day":      func(*StatementRecord, *Match) string { return "2026-11-27" },
		"a matched line":   func(_ *StatementRecord, m *Match) string { m.Class = LineMatched; return "2026-11-26" },
		"a line in flight": func(_ *StatementRecord, m *Match) string { m.InFlight = true; return "2026-11-26" },
		"another order":    func(_ *StatementRecord, m *Match) string { m.Order = 8; return "2026-11-26" },
		"still booking":    func(r *StatementRecord, _ *Match) string { r.Step = ExcBooking; return "2026-11-26" },
		"resolved":         func(r *StatementRecord, _ *Match) string { r.Step = ExcResolved; return "2026-11-26" },
		"not a short":      func(r *StatementRecord, _ *Match) string { r.Class = LineAmount; return "2026-11-26" },
	} {
		r := short(1000, 0)
		r.Step = ExcOpen
		m := line(LineAmount, 0, 200)
		date := f(&r, &m)
		was := r
		if r.Convert(date, m, 9) || r != was {
			t.Fatalf("%s: converted", name)
		}
	}
}

// TestStatementNotApplied: a line a full order could not take is decided (its difference
// kept, In and all); one an order with room could not take now is not (in flight, no record).
func TestStatementNotApplied(t *testing.T) {
	m := Match{Class: LineStatus, Txn: "DUP-X", In: 10, Note: "n"}
	o := &Order{Exceptions: make([]Exception, ExceptionsMax)}
	if got := NotApplied(m, o); got.InFlight || got.In != 10 || got.Class != LineStatus {
		t.Fatalf("full: %+v", got)
	}
	o.Exceptions = o.Exceptions[:ExceptionsMax-1]
	if got := NotApplied(m, o); !got.InFlight {
		t.Fatalf("room: %+v", got)
	}
	if got := NotApplied(m, nil); !got.InFlight {
		t.Fatalf("no order: %+v", got)
	}
	m.InFlight = true
	if got := NotApplied(m, &Order{Exceptions: make([]Exception, ExceptionsMax)}); !got.InFlight {
		t.Fatalf("in flight: %+v", got)
	}
}
