package accounting

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/ledgercore/ledger/ledger/money"
)

// Currencies name each ledger's currency by its ISO 4217 code (ledgerd --payment-ledger); a
// ledger it does not name (or a nil map) has no known currency, and its amounts print in
// minor units.
type Currencies map[uint32]string

// Of is ledger l's currency.
func (c Currencies) Of(l uint32) money.Currency { return money.Of(c[l]) }

// heading names a ledger and the unit of its amounts.
func heading(l uint32, cur money.Currency) string {
	if !cur.Known() {
		return fmt.Sprintf("ledger %d, amounts in minor units (no currency known)", l)
	}
	return fmt.Sprintf("ledger %d, amounts in %s", l, cur.Code)
}

// WriteTable prints the report for people: per ledger, the subjects as an indented tree, the
// transit accounts, the unclassified accounts and the total, in aligned columns, the amounts
// in the ledger's currency (68,981.01 for 6898101 minor units of CNY; minor units when the
// ledger has no known currency), right-aligned; then the differences (their amounts in minor
// units: they are the report's exact record), and "balanced" or "NOT balanced".
func WriteTable(w io.Writer, r *Report, currencies Currencies) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i := range r.Ledgers {
		l := &r.Ledgers[i]
		if i > 0 {
			fmt.Fprintln(tw)
		}
		cur := currencies.Of(l.Ledger)
		fmt.Fprintln(tw, heading(l.Ledger, cur))
		rows := [][]string{{"SUBJECT", "NAME", "CATEGORY", "SIDE", "DEBITS POSTED", "CREDITS POSTED", "DEBITS PENDING",
			"CREDITS PENDING", "BALANCE", "ACCOUNTS"}}
		for _, line := range lines(l) {
			name := line.Name
			if line.Category == 0 && line.Account == 0 {
				name = "" // transit, total: named in the subject column
			}
			rows = append(rows, []string{tableSubject(&line), printable(name), category(&line), line.Side.String(),
				cur.Format(line.DebitsPosted.Big()), cur.Format(line.CreditsPosted.Big()), cur.Format(line.DebitsPending.Big()),
				cur.Format(line.CreditsPending.Big()), cur.Format(line.Balance), strconv.FormatUint(line.Accounts, 10)})
		}
		AlignRight(rows, 4, 5, 6, 7, 8, 9)
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Ledgers) == 0 {
		fmt.Fprintln(w, "no accounts")
	}
	if len(r.Differences) > 0 {
		plural := "s"
		if len(r.Differences) == 1 {
			plural = ""
		}
		fmt.Fprintf(w, "\n%d difference%s (amounts in minor units):\n", len(r.Differences), plural)
		for _, d := range r.Differences {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	_, err := fmt.Fprintln(w, verdict(r))
	return err
}

// AlignRight pads the cells of columns cols on the left to the widest of each column (in
// runes), header row included: numbers line up on their last digit in a table that aligns
// its columns on the left (text/tabwriter).
func AlignRight(rows [][]string, cols ...int) {
	for _, c := range cols {
		width := 0
		for _, row := range rows {
			if c < len(row) {
				width = max(width, utf8.RuneCountInString(row[c]))
			}
		}
		for _, row := range rows {
			if c < len(row) {
				row[c] = strings.Repeat(" ", width-utf8.RuneCountInString(row[c])) + row[c]
			}
		}
	}
}

// verdict is the report's last line.
func verdict(r *Report) string {
	switch {
	case !r.Balanced:
		return "NOT balanced"
	case len(r.Differences) > 0:
		return "balanced, with differences"
	}
	return "balanced"
}

// CSVHeader is the first record WriteCSV writes.
var CSVHeader = []string{"ledger", "currency", "row", "depth", "leaf", "subject", "name", "category", "side", "debits_posted",
	"credits_posted", "debits_pending", "credits_pending", "balance", "accounts", "first_account"}

// WriteCSV writes the report's lines as CSV for finance tools (the header is CSVHeader): the
// subjects in tree order, then the transit accounts, the unclassified accounts by code and the
// total, per ledger. `currency` is the ledger's ISO 4217 code, and the amounts (debits_posted
// to balance) are exact decimals in its units, without separators ("68981.01", "-0.05"); for
// a ledger with no known currency, `currency` is empty and the amounts are integers in minor
// units. `row` says which (subject, transit, unclassified, total); `depth` and
// `leaf` say where a subject stands, so that summing only leaves (or only depth 0) counts each
// account once; `first_account` is an unclassified line's smallest account id. A text cell
// that a spreadsheet would read as a formula starts with an apostrophe. The differences are
// not part of it.
func WriteCSV(w io.Writer, r *Report, currencies Currencies) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for i := range r.Ledgers {
		l := &r.Ledgers[i]
		cur := currencies.Of(l.Ledger)
		for _, line := range lines(l) {
			row, subject, leaf, first := "subject", strconv.FormatUint(uint64(line.Code), 10), "", ""
			switch {
			case line.Category != 0:
				leaf = strconv.FormatBool(line.Leaf)
			case line.Account != 0:
				row, first = "unclassified", strconv.FormatUint(line.Account, 10)
			default:
				row, subject = line.Name, "" // transit, total
			}
			if err := cw.Write([]string{strconv.FormatUint(uint64(l.Ledger), 10), cur.Code, row, strconv.Itoa(line.Depth),
				leaf, subject, CSVCell(line.Name), category(&line), line.Side.String(), cur.Decimal(line.DebitsPosted.Big()),
				cur.Decimal(line.CreditsPosted.Big()), cur.Decimal(line.DebitsPending.Big()), cur.Decimal(line.CreditsPending.Big()),
				cur.Decimal(line.Balance), strconv.FormatUint(line.Accounts, 10), first}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// lines are a ledger's lines in print order.
func lines(l *Ledger) []Line {
	out := append([]Line(nil), l.Subjects...)
	out = append(out, l.Transit)
	out = append(out, l.Unclassified...)
	return append(out, l.Total)
}

func tableSubject(l *Line) string {
	switch {
	case l.Category != 0:
		return strings.Repeat("  ", l.Depth) + strconv.FormatUint(uint64(l.Code), 10)
	case l.Account != 0:
		return strconv.FormatUint(uint64(l.Code), 10)
	}
	return l.Name
}

func category(l *Line) string {
	if l.Category == 0 {
		return ""
	}
	return l.Category.String()
}

// printable replaces control characters (a tab would shift a table's columns).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// CSVCell is a text cell a spreadsheet reads as text: control characters become spaces, and
// one that starts like a formula gets an apostrophe first.
func CSVCell(s string) string {
	s = printable(s)
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}
