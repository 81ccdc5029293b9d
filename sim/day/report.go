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
	Found []string // where it was found (each of Want found once: Found == Want)
}

// Exact reports whether the day closed with its trial balance passed and reconciliation found
// every injected anomaly exactly where it belongs, once, and nothing else.
func (r *Report) Exact() bool {
	if r.EndOfDay.Outcome != eod.OutcomeClosed || len(r.Unexplained) > 0 {
		return false
	}
	for _, a := range r.Anomalies {
		if !slices.Equal(a.Want, a.Found) {
			return false
		}
	}
	return true
}

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

// Where a finding is.
func exceptionWhere(order uint64, kind payment.ExceptionKind) string {
	return fmt.Sprintf("%s of order %d", exceptionKind(kind), order)
}

func exceptionKind(kind payment.ExceptionKind) string {
	return fmt.Sprintf("exception record (%v)", kind)
}

func reconWhere(biz string, kind recon.Kind) string {
	return fmt.Sprintf("%s of biz id %s", reconKind(kind), biz)
}

func reconKind(kind recon.Kind) string {
	return fmt.Sprintf("near-real-time finding (%v)", kind)
}

func statementWhere(txn string, class payment.LineClass) string {
	return fmt.Sprintf("%s of txn %s", statementKind(class), txn)
}

func statementKind(class payment.LineClass) string {
	return fmt.Sprintf("statement record (%v)", class)
}

// faultClass is the statement difference a statement fault makes.
var faultClass = map[fake.StatementFault]payment.LineClass{
	fake.FaultDrop: payment.LineShort, fake.FaultAmount: payment.LineAmount, fake.FaultStatus: payment.LineStatus,
	fake.FaultLong: payment.LineLong,
}

// judge pairs the injected anomalies with the findings: every finding is claimed by at most
// one anomaly; the rest are unexplained.
func (r *Report) judge() {
	found := map[string]int{} // finding -> times found
	for _, x := range r.Exceptions {
		found[exceptionWhere(x.Order, x.Kind)]++
	}
	for i := range r.StatementRecords {
		s := &r.StatementRecords[i]
		found[statementWhere(s.Txn, s.Class)]++
	}
	for _, f := range r.ReconFindings {
		found[reconWhere(f.BizID, f.Kind)]++
	}
	for _, d := range r.ThreeWay {
		found[fmt.Sprintf("three-way difference of biz id %s: %v", d.BizID, d.Difference)]++
	}
	claim := func(a *Anomaly, where string) {
		a.Want = append(a.Want, where)
		if found[where] > 0 {
			for range found[where] {
				a.Found = append(a.Found, where)
			}
			delete(found, where)
		}
	}
	for _, f := range r.PayFaults {
		id, _, err := payment.ParseOrderNo(f.OrderNo)
		if err != nil {
			r.Unexplained = append(r.Unexplained, fmt.Sprintf("the channel collected for %q, not an order number of ours", f.OrderNo))
			continue
		}
		if f.DupPay {
			a := Anomaly{Kind: "duplicate payment", What: fmt.Sprintf("duplicate payment of order %d (%s collected %d twice: %s)", id, f.OrderNo, f.Paid,
				strings.Join(f.Txns, ", "))}
			claim(&a, exceptionWhere(id, payment.DuplicatePayment))
			claim(&a, reconWhere(f.BizID, recon.KindDuplicate))
			r.Anomalies = append(r.Anomalies, a)
		}
		if f.Mismatch {
			a := Anomaly{Kind: "amount mismatch", What: fmt.Sprintf("amount mismatch of order %d (%s: asked %d, collected %d, txn %s)", id, f.OrderNo, f.Asked,
				f.Paid, f.Txns[0])}
			claim(&a, exceptionWhere(id, payment.AmountMismatch))
			claim(&a, reconWhere(f.BizID, recon.KindAmount))
			r.Anomalies = append(r.Anomalies, a)
		}
	}
	for _, f := range r.StatementFaults {
		a := Anomaly{Kind: "statement " + f.Kind.String(), What: statementFaultText(f)}
		claim(&a, statementWhere(f.Txn, faultClass[f.Kind]))
		r.Anomalies = append(r.Anomalies, a)
	}
	for _, where := range slices.Sorted(maps.Keys(found)) {
		for range found[where] {
			r.Unexplained = append(r.Unexplained, where)
		}
	}
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
	fmt.Fprintf(w, "\n== orders of %v\n%s\n", r.Date, r.formsLine())
	fmt.Fprintf(w, "\n== end of day of %v: %v\n", r.Date, r.EndOfDay.Outcome)
	if r.EndOfDay.Report != nil {
		if err := accounting.WriteDayTable(w, r.EndOfDay.Report); err != nil {
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
		injected, once, missed, more int
		where                        string
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
		case slices.Equal(a.Want, a.Found):
			x.once++
		case len(a.Found) < len(a.Want):
			x.missed++
		default:
			x.more++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ANOMALY\tINJECTED\tFOUND ONCE\tMISSED\tFOUND MORE THAN ONCE\tFOUND AS")
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		x := rows[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", k, x.injected, x.once, x.missed, x.more, x.where)
	}
	fmt.Fprintf(tw, "anything else\t0\t\t\t%d\t(findings no injected anomaly explains)\n", len(r.Unexplained))
	if err := tw.Flush(); err != nil {
		return err
	}
	var listed []Anomaly
	for _, a := range r.Anomalies {
		if details || !slices.Equal(a.Want, a.Found) {
			listed = append(listed, a)
		}
	}
	if len(listed) > 0 {
		fmt.Fprintln(w)
		for _, a := range listed {
			fmt.Fprintf(w, "  %s: found %d time(s) as %s\n", a.What, len(a.Found), strings.Join(a.Want, "; "))
		}
	}
	if len(r.Unexplained) > 0 {
		fmt.Fprintf(w, "\nfindings no injected anomaly explains:\n")
		for _, u := range r.Unexplained {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	verdict := "EXACT: the trial balance passed, and every injected anomaly was found once, where it belongs, and nothing else"
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
