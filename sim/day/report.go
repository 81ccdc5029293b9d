package day

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/storage"
)

// Report is what a day injected and what reconciliation found.
type Report struct {
	Date ledger.Day
	// Forms counts the final orders by form and state ("pay succeeded").
	Forms map[string]int
	// What the channel injected.
	PayFaults       []fake.PayFault
	StatementFaults []fake.Fault
	// What the ledger found.
	EndOfDay         eod.Result
	Statement        payments.StatementReport
	Exceptions       []ExceptionFound
	StatementRecords []payment.StatementRecord
	BizIDs           int // biz ids checked three ways
	ThreeWay         []ThreeWayFound
	ReconFindings    []storage.ReconFinding // near-real-time reconciliation's
	ReconMatched     uint64                 // its windows closed matched
	// Anomalies are the injected ones, each with where it was found; Unexplained are
	// findings no injected anomaly accounts for.
	Anomalies   []Anomaly
	Unexplained []string
	judged      bool // the day ran to the end and judge paired it
}

// ExceptionFound is an exception record of an order.
type ExceptionFound struct {
	Order  uint64
	Index  int
	Kind   payment.ExceptionKind
	Step   payment.ExceptionStep
	Txn    string
	Amount uint64
}

// ThreeWayFound is a difference of the three-way check of a biz id.
type ThreeWayFound struct {
	BizID      string
	Difference payment.Difference
}

// Anomaly is an injected anomaly and the findings of it.
type Anomaly struct {
	Kind  string   // e.g. "duplicate payment"
	What  string   // e.g. "duplicate payment of P12 (txn FC..)"
	Want  []string // where it must be found, once each
	Found []string // where it was found, saying the right money (each of Want once: Found == Want)
	Wrong []string // findings where it belongs that say other money
}

// Exact reports whether the day closed with its trial balance passed and reconciliation found
// every injected anomaly exactly where it belongs, once, and nothing else.
func (r *Report) Exact() bool {
	if !r.judged || r.EndOfDay.Outcome != eod.OutcomeClosed || len(r.Unexplained) > 0 {
		return false
	}
	for _, a := range r.Anomalies {
		if !a.exact() {
			return false
		}
	}
	return true
}

func (a *Anomaly) exact() bool { return slices.Equal(a.Want, a.Found) && len(a.Wrong) == 0 }

func (r *Report) count(orders []*payment.Order) {
	r.Forms = map[string]int{}
	for _, o := range orders {
		r.Forms[o.Form.String()+" "+o.State.String()]++
	}
}

func (r *Report) formsLine() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Forms)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Forms[k]))
	}
	return strings.Join(parts, ", ")
}

// item is a finding: where it is (a record's kind and what it is about) and what it says
// about the money; an anomaly claims it by where and checks its money.
type item struct {
	where   string // e.g. "exception record (duplicate_payment) of order 7"
	money   string // e.g. "txn FC.., amount 1000"
	claimed bool
}

func (it *item) String() string { return it.where + " (" + it.money + ")" }

func exceptionWhere(order uint64, kind payment.ExceptionKind) string {
	return fmt.Sprintf("%s of order %d", exceptionKind(kind), order)
}

func exceptionKind(kind payment.ExceptionKind) string {
	return fmt.Sprintf("exception record (%v)", kind)
}

func exceptionMoney(txn string, amount uint64) string {
	return fmt.Sprintf("txn %s, amount %d", txn, amount)
}

func reconWhere(biz string, kind recon.Kind) string {
	return fmt.Sprintf("%s of biz id %s", reconKind(kind), biz)
}

func reconKind(kind recon.Kind) string {
	return fmt.Sprintf("near-real-time finding (%v)", kind)
}

func reconMoney(orders []uint64) string { return fmt.Sprintf("orders %v", orders) }

func statementWhere(txn string, class payment.LineClass) string {
	return fmt.Sprintf("%s of txn %s", statementKind(class), txn)
}

func statementKind(class payment.LineClass) string {
	return fmt.Sprintf("statement record (%v)", class)
}

func statusText(s channel.Status) string {
	if s == 0 {
		return "none"
	}
	return s.String()
}

func statementMoney(their channel.Status, theirAmount uint64, our channel.Status, ourAmount, in, out uint64) string {
	return fmt.Sprintf("theirs %s %d, ours %s %d, booked_in %d, reversible_out %d", statusText(their), theirAmount,
		statusText(our), ourAmount, in, out)
}

// faultClass is the statement difference a statement fault makes.
var faultClass = map[fake.StatementFault]payment.LineClass{
	fake.FaultDrop: payment.LineShort, fake.FaultAmount: payment.LineAmount, fake.FaultStatus: payment.LineStatus,
	fake.FaultLong: payment.LineLong,
}

// faultMoney is what the statement record of fault f must say: the two sides, and the money
// the channel holds that the books do not (booked_in) or the reverse (reversible_out): a
// collection adds to what the channel holds, a payout or a refund takes from it.
func faultMoney(f fake.Fault) string {
	theirs, ours := f.Amount, f.Amount
	their, our := channel.Succeeded, channel.Succeeded
	switch f.Kind {
	case fake.FaultDrop:
		their, theirs = 0, 0
	case fake.FaultAmount:
		theirs = f.Shown
	case fake.FaultStatus:
		their, theirs = channel.Failed, 0
	case fake.FaultLong:
		our, ours = 0, 0
	}
	var in, out uint64
	switch more := theirs > ours; {
	case theirs == ours:
	case more == (f.Op == channel.Pay):
		in = max(theirs, ours) - min(theirs, ours)
	default:
		out = max(theirs, ours) - min(theirs, ours)
	}
	return statementMoney(their, theirs, our, ours, in, out)
}

// judge pairs the injected anomalies with the findings: an anomaly claims each finding where
// it belongs (once: a claimed finding is not claimed again) and checks what it says about the
// money; the findings no anomaly claims are unexplained.
func (r *Report) judge() {
	r.judged = true
	var items []item
	for _, x := range r.Exceptions {
		items = append(items, item{where: exceptionWhere(x.Order, x.Kind), money: exceptionMoney(x.Txn, x.Amount)})
	}
	for i := range r.StatementRecords {
		s := &r.StatementRecords[i]
		items = append(items, item{where: statementWhere(s.Txn, s.Class),
			money: statementMoney(s.TheirStatus, s.TheirAmount, s.OurStatus, s.OurAmount, s.In, s.Out)})
	}
	for _, f := range r.ReconFindings {
		items = append(items, item{where: reconWhere(f.BizID, f.Kind), money: reconMoney(f.Orders)})
	}
	for _, d := range r.ThreeWay {
		items = append(items, item{where: "three-way difference of biz id " + d.BizID, money: d.Difference.String()})
	}
	// Lines the import applied as callbacks or left pending: the day settled before it, so
	// each is news the ledger did not have, and not an anomaly the channel injected.
	st := &r.Statement
	for what, n := range map[string]int{"applied as callbacks": st.Applied, "not applied": st.NotApplied, "pending": st.Pending} {
		if n > 0 {
			items = append(items, item{where: fmt.Sprintf("statement lines %s", what), money: fmt.Sprint(n)})
		}
	}
	claim := func(a *Anomaly, where string, money ...string) {
		a.Want = append(a.Want, where)
		for i := range items {
			it := &items[i]
			if it.claimed || it.where != where {
				continue
			}
			it.claimed = true
			if slices.Contains(money, it.money) {
				a.Found = append(a.Found, where)
			} else {
				a.Wrong = append(a.Wrong, fmt.Sprintf("%v, want %s", it, strings.Join(money, " or ")))
			}
		}
	}
	for _, f := range r.PayFaults {
		id, _, err := payment.ParseOrderNo(f.OrderNo)
		if err != nil {
			r.Unexplained = append(r.Unexplained, fmt.Sprintf("the channel collected for %q, not an order number of ours", f.OrderNo))
			continue
		}
		orders := reconMoney([]uint64{id})
		if f.DupPay {
			a := Anomaly{Kind: "duplicate payment", What: fmt.Sprintf("duplicate payment of order %d (%s collected %d twice: %s)", id, f.OrderNo, f.Paid,
				strings.Join(f.Txns, ", "))}
			// The record is of the collection the order did not take as its outcome: the
			// second, unless the notices came the other way round.
			claim(&a, exceptionWhere(id, payment.DuplicatePayment), exceptionMoney(f.Txns[1], f.Paid), exceptionMoney(f.Txns[0], f.Paid))
			claim(&a, reconWhere(f.BizID, recon.KindDuplicate), orders)
			r.Anomalies = append(r.Anomalies, a)
		}
		if f.Mismatch {
			a := Anomaly{Kind: "amount mismatch", What: fmt.Sprintf("amount mismatch of order %d (%s: asked %d, collected %d, txn %s)", id, f.OrderNo, f.Asked,
				f.Paid, f.Txns[0])}
			// Collected twice as well: the mismatch is recorded on whichever collection's
			// notice came first.
			money := []string{exceptionMoney(f.Txns[0], f.Paid)}
			if len(f.Txns) > 1 {
				money = append(money, exceptionMoney(f.Txns[1], f.Paid))
			}
			claim(&a, exceptionWhere(id, payment.AmountMismatch), money...)
			claim(&a, reconWhere(f.BizID, recon.KindAmount), orders)
			r.Anomalies = append(r.Anomalies, a)
		}
	}
	for _, f := range r.StatementFaults {
		a := Anomaly{Kind: "statement " + f.Kind.String(), What: statementFaultText(f)}
		claim(&a, statementWhere(f.Txn, faultClass[f.Kind]), faultMoney(f))
		r.Anomalies = append(r.Anomalies, a)
	}
	for i := range items {
		if !items[i].claimed {
			r.Unexplained = append(r.Unexplained, items[i].String())
		}
	}
	slices.Sort(r.Unexplained)
	slices.SortStableFunc(r.Anomalies, func(a, b Anomaly) int { return cmp.Compare(a.What, b.What) })
}

func statementFaultText(f fake.Fault) string {
	switch f.Kind {
	case fake.FaultDrop:
		return fmt.Sprintf("statement leaves out txn %s (%v %d of %s)", f.Txn, f.Op, f.Amount, f.OrderNo)
	case fake.FaultAmount:
		return fmt.Sprintf("statement shows txn %s (%v of %s) as %d, not %d", f.Txn, f.Op, f.OrderNo, f.Shown, f.Amount)
	case fake.FaultStatus:
		return fmt.Sprintf("statement shows txn %s (%v %d of %s) as failed", f.Txn, f.Op, f.Amount, f.OrderNo)
	case fake.FaultLong:
		return fmt.Sprintf("statement lists txn %s, a %v %d of %s no one asked for", f.Txn, channel.Pay, f.Amount, f.OrderNo)
	}
	return fmt.Sprintf("statement fault %v of txn %s", f.Kind, f.Txn)
}

// Write prints the report for people: the orders, the trial balance of the day, the
// statement's classes, the anomalies injected by kind with where they were found, what no
// anomaly explains, and the verdict; with details, every anomaly (else only those not found
// exactly once).
func (r *Report) Write(w io.Writer, details bool) error {
	if !r.judged {
		_, err := fmt.Fprintf(w, "\nNOT JUDGED: the day did not run to its end (see the error)\n")
		return err
	}
	fmt.Fprintf(w, "\n== orders of %v\n%s\n", r.Date, r.formsLine())
	fmt.Fprintf(w, "\n== end of day of %v: %v\n", r.Date, r.EndOfDay.Outcome)
	if r.EndOfDay.Report != nil {
		if err := accounting.WriteDayTable(w, r.EndOfDay.Report, accounting.Currencies{1: currency}); err != nil {
			return err
		}
	}
	st := &r.Statement
	fmt.Fprintf(w, "\n== statement of %v imported: %d lines, %d applied as callbacks, %d pending\n", r.Date, st.Lines, st.Applied, st.Pending)
	var classes []string
	for _, c := range slices.Sorted(maps.Keys(st.Counts)) {
		classes = append(classes, fmt.Sprintf("%v %d", c, st.Counts[c]))
	}
	fmt.Fprintln(w, strings.Join(classes, ", "))
	fmt.Fprintf(w, "\n== three-way check (orders, channel requests, ledger transfers): %d biz ids, %d differences\n", r.BizIDs, len(r.ThreeWay))
	fmt.Fprintf(w, "\n== anomalies the channel injected, and where reconciliation found them\n")
	type row struct {
		injected, once, missed, more, wrong int
		where                               string
	}
	rows := map[string]*row{}
	for _, a := range r.Anomalies {
		x := rows[a.Kind]
		if x == nil {
			x = &row{where: kindWhere(a.Want)}
			rows[a.Kind] = x
		}
		x.injected++
		switch {
		case a.exact():
			x.once++
		case len(a.Wrong) > 0:
			x.wrong++
		case len(a.Found) < len(a.Want):
			x.missed++
		default:
			x.more++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ANOMALY\tINJECTED\tFOUND ONCE\tMISSED\tFOUND MORE THAN ONCE\tWRONG MONEY\tFOUND AS")
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		x := rows[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", k, x.injected, x.once, x.missed, x.more, x.wrong, x.where)
	}
	fmt.Fprintf(tw, "anything else\t0\t\t\t%d\t\t(findings no injected anomaly explains)\n", len(r.Unexplained))
	if err := tw.Flush(); err != nil {
		return err
	}
	var listed []Anomaly
	for _, a := range r.Anomalies {
		if details || !a.exact() {
			listed = append(listed, a)
		}
	}
	if len(listed) > 0 {
		fmt.Fprintln(w)
		for _, a := range listed {
			fmt.Fprintf(w, "  %s: found %d time(s) as %s\n", a.What, len(a.Found), strings.Join(a.Want, "; "))
			for _, x := range a.Wrong {
				fmt.Fprintf(w, "    wrong money: %s\n", x)
			}
		}
	}
	if len(r.Unexplained) > 0 {
		fmt.Fprintf(w, "\nfindings no injected anomaly explains:\n")
		for _, u := range r.Unexplained {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	verdict := "EXACT: the trial balance passed, and every injected anomaly was found once, where it belongs, with its money, and nothing else"
	if !r.Exact() {
		verdict = "NOT EXACT: see above"
	}
	_, err := fmt.Fprintf(w, "\n%s\n", verdict)
	return err
}

// kindWhere is where an anomaly of a kind is found, without its order or txn.
func kindWhere(want []string) string {
	var out []string
	for _, w := range want {
		out = append(out, w[:strings.Index(w, ") of ")+1])
	}
	return strings.Join(out, "; ")
}
