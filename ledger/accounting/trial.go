// Package accounting computes the books' reports from accounts and the chart of accounts
// (ledger/rules): pure functions of their inputs, with no I/O, and deterministic output.
//
// The trial balance (试算平衡) sums every account's balance into its subject and every parent
// subject, per ledger (currency), and checks the books: total debits equal total credits, each
// parent subject equals the sum of its children, the transit accounts are drained, and every
// account hangs under a leaf subject of the chart.
package accounting

import (
	"fmt"
	"iter"
	"maps"
	"math/big"
	"slices"
	"strings"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

// Totals are the summed balances of some accounts, in minor units. Sums are exact: every total
// of a real ledger is below 2^128 (see ledger.Uint128); a sum that would pass it is reported as
// a difference ("overflow") and kept modulo 2^128.
type Totals struct {
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending ledger.Uint128
	Accounts                                                   uint64
}

// add adds o to t modulo 2^128, and reports whether every sum fit. (Sums only grow, so whether
// one passed 2^128 and the wrapped value do not depend on the order of the additions.)
func (t *Totals) add(o Totals) bool {
	ok := true
	for _, p := range []struct{ dst, v *ledger.Uint128 }{{&t.DebitsPosted, &o.DebitsPosted},
		{&t.CreditsPosted, &o.CreditsPosted}, {&t.DebitsPending, &o.DebitsPending}, {&t.CreditsPending, &o.CreditsPending}} {
		_, fits := p.dst.Add(*p.v)
		*p.dst, ok = p.dst.WrapAdd(*p.v), ok && fits
	}
	t.Accounts += o.Accounts
	return ok
}

func totalsOf(a *ledger.Account) Totals {
	return Totals{DebitsPosted: a.DebitsPosted, CreditsPosted: a.CreditsPosted, DebitsPending: a.DebitsPending,
		CreditsPending: a.CreditsPending, Accounts: 1}
}

// Balance is the posted balance on side: debits minus credits on the debit side, credits minus
// debits on the credit side; negative when it stands on the other side.
func (t *Totals) Balance(side rules.Side) *big.Int {
	d, c := t.DebitsPosted.Big(), t.CreditsPosted.Big()
	if side == rules.Credit {
		return c.Sub(c, d)
	}
	return d.Sub(d, c)
}

// Line is one line of a trial balance: a subject of the chart, the transit accounts, an
// unclassified account or a ledger's total.
type Line struct {
	// Code is the subject's code; for an unclassified account, the code the account carries;
	// 0 for the transit and total lines.
	Code uint32
	// Account is the smallest id of an unclassified line's accounts (0 on other lines).
	Account  uint64
	Name     string
	Category rules.Category // 0 on lines that are not a subject's
	Side     rules.Side     // the side Balance stands on: the category's normal side, else debit
	Depth    int            // a subject's depth in the chart (0: a root)
	Leaf     bool           // a subject that accounts hang under (summing leaves counts each once)
	Totals
	Balance *big.Int // posted, on Side; may be negative
}

// Ledger is the trial balance of one ledger (currency).
type Ledger struct {
	Ledger uint32
	// Subjects are every subject of the chart in tree order (roots by code, each followed by
	// its children by code), a parent's totals rolled up from the accounts under its leaves.
	Subjects []Line
	// Transit sums the ledger's transit accounts (ids from ledger.TransitIDMin).
	Transit Line
	// Unclassified sums, by code, the accounts whose code names no leaf subject of the
	// chart; Account is the smallest of their ids.
	Unclassified []Line
	// Total sums every account of the ledger: its subjects' roots, transit and unclassified.
	Total Line
}

// Report is a trial balance.
type Report struct {
	Ledgers []Ledger // by ledger
	// Balanced: in every ledger debits equal credits (posted and pending). (That every parent
	// subject and the ledger's total equal the sum of their parts is checked too, but holds by
	// construction for a chart from rules.Load: it guards this package, not the books.)
	// Transit not drained and unclassified accounts are differences that do not unbalance the
	// books; at the end of a day they should be none.
	Balanced bool
	// Differences are what the checks found, each naming its ledger, its kind (unbalanced,
	// roll-up, overflow, transit not drained, unclassified) and the numbers that differ; by
	// ledger, in that order of kinds. None: the books are clean.
	Differences []string
}

// Builder sums accounts into a trial balance; feed it accounts in any order, then call Report.
type Builder struct {
	chart   *rules.Chart
	ledgers map[uint32]*sums
}

type sums struct {
	subjects     map[uint32]*Totals // each account is added to its leaf and to every parent of it
	transit      Totals
	unclassified map[uint32]*stray // by the code the accounts carry
	total        Totals
	overflow     map[string]bool // what passed 2^128
}

// stray sums the accounts of one code that names no leaf subject: their totals and the first
// few ids (a store of many such accounts makes one line per code, not one per account).
type stray struct {
	Totals
	ids []uint64
}

// StrayIDsMax is how many account ids an unclassified line names.
const StrayIDsMax = 3

// NewBuilder starts a trial balance on chart.
func NewBuilder(chart *rules.Chart) *Builder {
	return &Builder{chart: chart, ledgers: map[uint32]*sums{}}
}

// TrialBalance is the trial balance of accounts on chart.
func TrialBalance(chart *rules.Chart, accounts iter.Seq[ledger.Account]) Report {
	b := NewBuilder(chart)
	for a := range accounts {
		b.Add(a)
	}
	return b.Report()
}

// Add takes an account with its balance.
func (b *Builder) Add(a ledger.Account) {
	s := b.ledgers[a.Ledger]
	if s == nil {
		s = &sums{subjects: map[uint32]*Totals{}, unclassified: map[uint32]*stray{}, overflow: map[string]bool{}}
		b.ledgers[a.Ledger] = s
	}
	t := totalsOf(&a)
	s.addTo(&s.total, t, "the ledger's total")
	if a.ID >= ledger.TransitIDMin {
		s.addTo(&s.transit, t, "transit")
		return
	}
	subject := b.chart.Subjects[a.Code]
	if subject == nil || !subject.Leaf() {
		u := s.unclassified[a.Code]
		if u == nil {
			u = &stray{}
			s.unclassified[a.Code] = u
		}
		s.addTo(&u.Totals, t, fmt.Sprintf("unclassified code %d", a.Code))
		u.ids = append(u.ids, a.ID)
		if len(u.ids) > StrayIDsMax { // keep the smallest ids, whatever the order accounts come in
			slices.Sort(u.ids)
			u.ids = u.ids[:StrayIDsMax]
		}
		return
	}
	for code, hops := a.Code, 0; code != 0 && hops <= len(b.chart.Subjects); hops++ {
		sub := b.chart.Subjects[code]
		if sub == nil { // a chart that did not come from rules.Load
			break
		}
		st := s.subjects[code]
		if st == nil {
			st = &Totals{}
			s.subjects[code] = st
		}
		s.addTo(st, t, fmt.Sprintf("subject %d", code))
		code = sub.Parent
	}
}

func (s *sums) addTo(dst *Totals, t Totals, what string) {
	if !dst.add(t) {
		s.overflow[what] = true
	}
}

// Report finishes the trial balance. The builder may take more accounts after it.
func (b *Builder) Report() Report {
	rep := Report{Balanced: true}
	order := b.treeOrder()
	for _, l := range slices.Sorted(maps.Keys(b.ledgers)) {
		s := b.ledgers[l]
		led := Ledger{Ledger: l}
		var unbalanced, info []string
		diff := func(list *[]string, kind, format string, args ...any) {
			*list = append(*list, fmt.Sprintf("ledger %d: %s: ", l, kind)+fmt.Sprintf(format, args...))
		}
		for _, o := range slices.Sorted(maps.Keys(s.overflow)) {
			diff(&unbalanced, "overflow", "%s passes 2^128", o)
		}
		for _, n := range order {
			sub := b.chart.Subjects[n.code]
			t := Totals{}
			if st := s.subjects[n.code]; st != nil {
				t = *st
			}
			side := sub.Category.NormalSide()
			led.Subjects = append(led.Subjects, Line{Code: sub.Code, Name: sub.Name, Category: sub.Category,
				Side: side, Depth: n.depth, Leaf: sub.Leaf(), Totals: t, Balance: t.Balance(side)})
		}
		led.Transit = Line{Name: "transit", Side: rules.Debit, Totals: s.transit, Balance: s.transit.Balance(rules.Debit)}
		for _, code := range slices.Sorted(maps.Keys(s.unclassified)) {
			u := s.unclassified[code]
			slices.Sort(u.ids)
			ids := make([]string, len(u.ids))
			for i, id := range u.ids {
				ids[i] = fmt.Sprint(id)
			}
			more := ""
			if u.Accounts > uint64(len(u.ids)) {
				more = ", ..."
			}
			led.Unclassified = append(led.Unclassified, Line{Code: code, Account: u.ids[0], Side: rules.Debit,
				Name:   fmt.Sprintf("unclassified code %d: %d accounts (%s%s)", code, u.Accounts, strings.Join(ids, ", "), more),
				Totals: u.Totals, Balance: u.Totals.Balance(rules.Debit)})
		}
		led.Total = Line{Name: "total", Side: rules.Debit, Totals: s.total, Balance: s.total.Balance(rules.Debit)}

		// Debits equal credits.
		if t := s.total; t.DebitsPosted != t.CreditsPosted {
			diff(&unbalanced, "unbalanced", "posted debits %v, posted credits %v (debits minus credits %v)",
				t.DebitsPosted, t.CreditsPosted, t.Balance(rules.Debit))
		}
		if t := s.total; t.DebitsPending != t.CreditsPending {
			d, c := t.DebitsPending.Big(), t.CreditsPending.Big()
			diff(&unbalanced, "unbalanced", "pending debits %v, pending credits %v (debits minus credits %v)",
				t.DebitsPending, t.CreditsPending, d.Sub(d, c))
		}
		// Each parent is the sum of its children; the total is the sum of its parts.
		byCode := map[uint32]*Line{}
		for i := range led.Subjects {
			byCode[led.Subjects[i].Code] = &led.Subjects[i]
		}
		var roots Totals
		for i := range led.Subjects {
			line := &led.Subjects[i]
			if line.Depth == 0 {
				roots.add(line.Totals)
			}
			sub := b.chart.Subjects[line.Code]
			if sub.Leaf() {
				continue
			}
			var children Totals
			for _, c := range sub.Children {
				if cl := byCode[c]; cl != nil {
					children.add(cl.Totals)
				}
			}
			for _, d := range compare(line.Totals, children) {
				diff(&unbalanced, "roll-up", "subject %d (%s): %s %v, the sum of its children %v",
					line.Code, line.Name, d.field, d.got, d.want)
			}
		}
		parts := roots
		parts.add(s.transit)
		for _, u := range led.Unclassified {
			parts.add(u.Totals)
		}
		for _, d := range compare(s.total, parts) {
			diff(&unbalanced, "roll-up", "the ledger's %s %v, the sum of its root subjects, transit and unclassified accounts %v",
				d.field, d.got, d.want)
		}
		// Transit drained.
		if t := s.transit; t.DebitsPosted != t.CreditsPosted {
			diff(&info, "transit not drained", "transit accounts hold posted debits %v, posted credits %v (debits minus credits %v)",
				t.DebitsPosted, t.CreditsPosted, t.Balance(rules.Debit))
		}
		// Every account under a leaf subject.
		for _, u := range led.Unclassified {
			why := "names no subject of the chart"
			if sub := b.chart.Subjects[u.Code]; sub != nil {
				why = fmt.Sprintf("names subject %d (%s), which has subjects under it", sub.Code, sub.Name)
			}
			diff(&info, "unclassified", "%d accounts (from %d): code %d %s (posted debits %v, credits %v; pending debits %v, credits %v)",
				u.Accounts, u.Account, u.Code, why, u.DebitsPosted, u.CreditsPosted, u.DebitsPending, u.CreditsPending)
		}
		if len(unbalanced) > 0 {
			rep.Balanced = false
		}
		rep.Differences = append(append(rep.Differences, unbalanced...), info...)
		rep.Ledgers = append(rep.Ledgers, led)
	}
	return rep
}

type node struct {
	code  uint32
	depth int
}

// treeOrder is the chart's subjects depth first: roots by code, children by code.
func (b *Builder) treeOrder() []node {
	var out []node
	seen := map[uint32]bool{}
	var walk func(code uint32, depth int)
	walk = func(code uint32, depth int) {
		if seen[code] { // a chart that did not come from rules.Load may loop
			return
		}
		seen[code] = true
		out = append(out, node{code, depth})
		for _, c := range slices.Sorted(slices.Values(b.chart.Subjects[code].Children)) {
			if b.chart.Subjects[c] != nil {
				walk(c, depth+1)
			}
		}
	}
	for _, code := range b.chart.SubjectCodes() {
		if s := b.chart.Subjects[code]; s.Parent == 0 || b.chart.Subjects[s.Parent] == nil {
			walk(code, 0)
		}
	}
	return out
}

type fieldDiff struct {
	field     string
	got, want fmt.Stringer
}

// compare lists the fields in which got differs from want.
func compare(got, want Totals) []fieldDiff {
	var out []fieldDiff
	for _, f := range []struct {
		name      string
		got, want ledger.Uint128
	}{{"posted debits", got.DebitsPosted, want.DebitsPosted}, {"posted credits", got.CreditsPosted, want.CreditsPosted},
		{"pending debits", got.DebitsPending, want.DebitsPending}, {"pending credits", got.CreditsPending, want.CreditsPending}} {
		if f.got != f.want {
			out = append(out, fieldDiff{f.name, f.got, f.want})
		}
	}
	if got.Accounts != want.Accounts {
		out = append(out, fieldDiff{"accounts", ledger.U128(got.Accounts), ledger.U128(want.Accounts)})
	}
	return out
}
