package accounting

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// WriteTable prints the report for people: per ledger, the subjects as an indented tree, the
// transit accounts, the unclassified accounts and the total, in aligned columns (amounts in
// minor units); then the differences, and "balanced" or "NOT balanced".
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i := range r.Ledgers {
		l := &r.Ledgers[i]
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "ledger %d\n", l.Ledger)
		fmt.Fprintln(tw, "SUBJECT\tNAME\tCATEGORY\tSIDE\tDEBITS POSTED\tCREDITS POSTED\tDEBITS PENDING\tCREDITS PENDING\tBALANCE\tACCOUNTS")
		for _, line := range lines(l) {
			name := line.Name
			if line.Category == 0 && line.Account == 0 {
				name = "" // transit, total: named in the subject column
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%v\t%v\t%v\t%d\n", tableSubject(&line), printable(name), category(&line),
				line.Side, line.DebitsPosted, line.CreditsPosted, line.DebitsPending, line.CreditsPending, line.Balance, line.Accounts)
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
		fmt.Fprintf(w, "\n%d difference%s:\n", len(r.Differences), plural)
		for _, d := range r.Differences {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	_, err := fmt.Fprintln(w, verdict(r))
	return err
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
var CSVHeader = []string{"ledger", "row", "depth", "leaf", "subject", "name", "category", "side", "debits_posted",
	"credits_posted", "debits_pending", "credits_pending", "balance", "accounts", "first_account"}

// WriteCSV writes the report's lines as CSV for finance tools (the header is CSVHeader): the
// subjects in tree order, then the transit accounts, the unclassified accounts by code and the
// total, per ledger. `row` says which (subject, transit, unclassified, total); `depth` and
// `leaf` say where a subject stands, so that summing only leaves (or only depth 0) counts each
// account once; `first_account` is an unclassified line's smallest account id. A text cell
// that a spreadsheet would read as a formula starts with an apostrophe. The differences are
// not part of it.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for i := range r.Ledgers {
		l := &r.Ledgers[i]
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
			if err := cw.Write([]string{strconv.FormatUint(uint64(l.Ledger), 10), row, strconv.Itoa(line.Depth), leaf,
				subject, CSVCell(line.Name), category(&line), line.Side.String(), line.DebitsPosted.String(),
				line.CreditsPosted.String(), line.DebitsPending.String(), line.CreditsPending.String(),
				line.Balance.String(), strconv.FormatUint(line.Accounts, 10), first}); err != nil {
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
