package accounting

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

// The trial balance of an accounting day (日终试算), for end of day: on top of the trial
// balance of the closing balances (Report: debits equal credits, each subject the sum of
// its accounts, unclassified accounts), it checks, per ledger, that the day's postings moved
// as many debits as credits, transit accounts included; per account, that the opening balance
// (the day before's closing) moved by the day's postings is the closing balance; and that
// the transit accounts are drained, posted and pending (at the end of a day no split transfer
// may be between its legs). Any of these but an unclassified account fails the day.

// AccountDiffsMax is how many accounts whose closing does not follow from their opening and
// movements a day's report names (the rest are counted).
const AccountDiffsMax = 20

// DayLedger is what one ledger's postings moved in a day, transit accounts included.
type DayLedger struct {
	Ledger uint32
	ledger.Movement
}

// DayReport is the trial balance of an accounting day.
type DayReport struct {
	Day ledger.Day
	// Movements are the day's movements per ledger.
	Movements []DayLedger
	// Trial is the trial balance of the closing balances.
	Trial Report
	// AccountMismatches counts the accounts whose closing balance is not their opening moved
	// by the day's postings (the first AccountDiffsMax are in Differences).
	AccountMismatches uint64
	// Differences are the day's own (unbalanced day, account, transit not drained), by
	// ledger, then the trial balance's.
	Differences []string
	// Passed: no difference but unclassified accounts. A day that did not pass is not
	// archived.
	Passed bool
}

// DayBuilder sums a day's accounts; feed it every account, in any order, then call Report.
type DayBuilder struct {
	day        ledger.Day
	trial      *Builder
	moved      map[uint32]*ledger.Movement
	overflow   map[uint32]bool
	mismatches uint64
	accounts   []string // the first AccountDiffsMax mismatches, by account id
	worst      []uint64 // their ids, sorted
}

// NewDayBuilder starts the trial balance of day on chart.
func NewDayBuilder(chart *rules.Chart, day ledger.Day) *DayBuilder {
	return &DayBuilder{day: day, trial: NewBuilder(chart), moved: map[uint32]*ledger.Movement{}, overflow: map[uint32]bool{}}
}

// Add takes an account with its closing balance (a.Balance), its opening balance and what the
// day's postings moved on it (for a transit account: the mirror of its shard's split postings).
func (b *DayBuilder) Add(a ledger.Account, opening ledger.Balance, moved *ledger.Movement) {
	b.trial.Add(a)
	m := b.moved[a.Ledger]
	if m == nil {
		m = &ledger.Movement{}
		b.moved[a.Ledger] = m
	}
	if !m.Merge(moved) {
		b.overflow[a.Ledger] = true
	}
	want, ok := moved.Forward(opening)
	if ok && want == a.Balance {
		return
	}
	b.mismatches++
	if len(b.worst) == AccountDiffsMax && a.ID > b.worst[len(b.worst)-1] {
		return
	}
	got := fmt.Sprintf("ledger %d: account: %s %d: opening %s moved by %s is %s, closing is %s", a.Ledger,
		accountKind(a.ID), a.ID, balanceText(opening), movementText(moved), balanceOrOverflow(want, ok), balanceText(a.Balance))
	i, _ := slices.BinarySearch(b.worst, a.ID)
	b.worst = slices.Insert(b.worst, i, a.ID)
	b.accounts = slices.Insert(b.accounts, i, got)
	if len(b.worst) > AccountDiffsMax {
		b.worst, b.accounts = b.worst[:AccountDiffsMax], b.accounts[:AccountDiffsMax]
	}
}

func accountKind(id uint64) string {
	if _, _, ok := ledger.IsTransit(id); ok {
		return "transit"
	}
	return "account"
}

// Report finishes the day's trial balance.
func (b *DayBuilder) Report() DayReport {
	r := DayReport{Day: b.day, Trial: b.trial.Report(), AccountMismatches: b.mismatches}
	var diffs []string
	for _, l := range slices.Sorted(maps.Keys(b.moved)) {
		m := b.moved[l]
		r.Movements = append(r.Movements, DayLedger{Ledger: l, Movement: *m})
		if b.overflow[l] {
			diffs = append(diffs, fmt.Sprintf("ledger %d: overflow: the day's movements pass 2^128", l))
		}
		if m.In.DebitsPosted != m.In.CreditsPosted {
			diffs = append(diffs, fmt.Sprintf("ledger %d: day unbalanced: the day's postings moved posted debits %v, posted credits %v",
				l, m.In.DebitsPosted, m.In.CreditsPosted))
		}
		// pending debits moved (in - out) against pending credits moved (in - out)
		dIn, _ := m.In.DebitsPending.Add(m.Out.CreditsPending)
		cIn, _ := m.In.CreditsPending.Add(m.Out.DebitsPending)
		if dIn != cIn {
			diffs = append(diffs, fmt.Sprintf("ledger %d: day unbalanced: the day's postings held debits %v and released %v, held credits %v and released %v",
				l, m.In.DebitsPending, m.Out.DebitsPending, m.In.CreditsPending, m.Out.CreditsPending))
		}
	}
	diffs = append(diffs, b.accounts...)
	if more := b.mismatches - uint64(len(b.accounts)); more > 0 {
		diffs = append(diffs, fmt.Sprintf("account: %d more accounts whose closing is not their opening moved by the day", more))
	}
	for _, l := range r.Trial.Ledgers {
		if t := l.Transit; t.DebitsPending != t.CreditsPending {
			diffs = append(diffs, fmt.Sprintf("ledger %d: transit not drained: transit accounts hold pending debits %v, pending credits %v",
				l.Ledger, t.DebitsPending, t.CreditsPending))
		}
	}
	failed := len(diffs) > 0 || !r.Trial.Balanced
	for _, l := range r.Trial.Ledgers {
		if t := l.Transit; t.DebitsPosted != t.CreditsPosted {
			failed = true // the trial balance lists it
		}
	}
	r.Differences = append(diffs, r.Trial.Differences...)
	r.Passed = !failed
	return r
}

func balanceText(b ledger.Balance) string {
	return fmt.Sprintf("[posted %v/%v pending %v/%v]", b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending)
}

func balanceOrOverflow(b ledger.Balance, ok bool) string {
	if !ok {
		return "out of range"
	}
	return balanceText(b)
}

func movementText(m *ledger.Movement) string {
	return fmt.Sprintf("[posted +%v/+%v pending +%v-%v/+%v-%v]", m.In.DebitsPosted, m.In.CreditsPosted,
		m.In.DebitsPending, m.Out.DebitsPending, m.In.CreditsPending, m.Out.CreditsPending)
}

// WriteDayTable prints a day's trial balance for people: the day's movements per ledger, in
// its currency (minor units when it has no known currency), the trial balance of the closing
// balances (WriteTable), the day's differences (amounts in minor units), and the verdict.
func WriteDayTable(w io.Writer, r *DayReport, currencies Currencies) error {
	fmt.Fprintf(w, "accounting day %v\n", r.Day)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	unknown := false
	rows := [][]string{{"LEDGER", "CURRENCY", "DEBITS POSTED", "CREDITS POSTED", "DEBITS HELD", "DEBITS RELEASED",
		"CREDITS HELD", "CREDITS RELEASED"}}
	for _, m := range r.Movements {
		cur := currencies.Of(m.Ledger)
		unknown = unknown || !cur.Known()
		rows = append(rows, []string{strconv.FormatUint(uint64(m.Ledger), 10), cur.Label(), cur.Format(m.In.DebitsPosted.Big()),
			cur.Format(m.In.CreditsPosted.Big()), cur.Format(m.In.DebitsPending.Big()), cur.Format(m.Out.DebitsPending.Big()),
			cur.Format(m.In.CreditsPending.Big()), cur.Format(m.Out.CreditsPending.Big())})
	}
	AlignRight(rows, 2, 3, 4, 5, 6, 7)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if unknown {
		fmt.Fprintln(w, "(currency -: amounts in minor units, no currency known)")
	}
	fmt.Fprintln(w, "\nclosing balances")
	if err := WriteTable(w, &r.Trial, currencies); err != nil {
		return err
	}
	day := r.Differences[:len(r.Differences)-len(r.Trial.Differences)]
	if len(day) > 0 {
		fmt.Fprintf(w, "\n%d difference(s) of the day (amounts in minor units):\n", len(day))
		for _, d := range day {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "trial balance of %v: %s\n", r.Day, verdict)
	return err
}
