package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/money"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

func init() {
	paymentUsage["statement"] = "ledgerctl statement [--addr HOST:PORT] --channel NAME --date YYYY-MM-DD [--csv]"
	paymentUsage["resolve-statement"] = "ledgerctl resolve-statement [--addr HOST:PORT] [--note TEXT] CHANNEL DATE TXN close|reverse"
}

// statementHeader is the CSV header of a statement report, one line per difference. The
// amounts (their_amount, our_amount, booked_in, reversible_out) are exact decimals in the
// currency's units ("68981.01"); when currency is empty (the line's code is not an ISO 4217
// currency) they are integers in minor units.
var statementHeader = []string{"class", "order_no", "order_id", "txn", "op", "their_status", "their_amount",
	"our_status", "our_amount", "currency", "ledger", "booked_in", "reversible_out", "note"}

// statement has ledgerd fetch, verify and reconcile a channel's statement of a day, and prints
// what it found: a summary, then the differences as a table (or CSV with --csv, the summary
// on stderr). Exit 0: no difference; 1: differences (each has its record); 2: could not run
// (nothing written).
func statement(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("statement", stdout, stderr)
	name := c.fs.String("channel", "", "the payment channel whose statement it is")
	date := c.fs.String("date", "", "the statement's day, YYYY-MM-DD (UTC)")
	asCSV := c.fs.Bool("csv", false, "print the differences as CSV (the summary goes to stderr)")
	*c.timeout = 10 * time.Minute
	if code := c.parse(args); code >= 0 {
		return code
	}
	switch {
	case *name == "":
		return c.fail("--channel is required")
	case *date == "":
		return c.fail("--date is required")
	case len(c.args) > 0:
		return c.fail("unexpected arguments %q", c.args)
	}
	if d, err := time.Parse(time.DateOnly, *date); err != nil || d.Format(time.DateOnly) != *date {
		return c.fail("--date %q is not YYYY-MM-DD", *date)
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		r, err := pc.ImportStatement(ctx, &ledgerv1.ImportStatementRequest{Channel: *name, Date: *date})
		if err != nil {
			return c.rpcError(err, "")
		}
		summary := stdout
		if *asCSV {
			summary = stderr
		}
		again := ""
		if r.GetAgain() {
			again = " (imported before)"
		}
		fmt.Fprintf(summary, "statement of %s for %s%s: %d lines; matched %d, duplicate %d, held %d, long %d, amount_mismatch %d, "+
			"status_mismatch %d, short %d; pending %d; applied %d, not applied %d; new records %d\n", *name, *date, again,
			r.GetLines(), r.GetMatched(), r.GetDuplicate(), r.GetHeld(), r.GetLong(), r.GetAmountMismatch(), r.GetStatusMismatch(),
			r.GetShort(), r.GetPending(), r.GetApplied(), r.GetNotApplied(), r.GetNewRecords())
		var code int
		if *asCSV {
			code = writeDifferencesCSV(stdout, r.GetDifferences())
		} else {
			code = printDifferences(stdout, r.GetDifferences())
		}
		if code != 0 {
			return code
		}
		if held := r.GetHeldLines(); len(held) > 0 && !*asCSV {
			fmt.Fprintf(stdout, "\n%d line(s) held by an exception record of their order (not differences: ledgerctl exceptions shows the records):\n", r.GetHeld())
			if code := printDifferences(stdout, held); code != 0 {
				return code
			}
		}
		if n := r.GetLong() + r.GetAmountMismatch() + r.GetStatusMismatch() + r.GetShort(); n > 0 {
			if listed := uint32(len(r.GetDifferences())); listed < n {
				fmt.Fprintf(summary, "%d more differences not listed: ledgerctl exceptions --statements\n", n-listed)
			}
			return 1
		}
		return 0
	})
}

// differenceCells are a difference's cells: for people (table), the amounts in the currency's
// units with separators and the currency "-" when unknown; for machines, exact decimals and
// the currency empty when unknown (the amounts then in minor units).
func differenceCells(d *ledgerv1.StatementDifference, table bool) []string {
	cur := money.Of(d.GetCurrency())
	amount, code := cur.DecimalUint64, cur.Code
	if table {
		amount, code = cur.FormatUint64, cur.Label()
	}
	return []string{enumName(d.GetClass().String(), "STATEMENT_CLASS_"), d.GetOrderNo(), strconv.FormatUint(d.GetOrderId(), 10),
		d.GetTxn(), d.GetOp(), d.GetTheirStatus(), amount(d.GetTheirAmount()), d.GetOurStatus(),
		amount(d.GetOurAmount()), code, strconv.FormatUint(uint64(d.GetLedger()), 10),
		amount(d.GetBookedIn()), amount(d.GetReversibleOut()), d.GetNote()}
}

// printDifferences prints differences as an aligned table, amounts in their currency's units
// (minor units when the line's currency is not one ISO 4217 lists: currency "-").
func printDifferences(stdout io.Writer, ds []*ledgerv1.StatementDifference) int {
	if len(ds) == 0 {
		fmt.Fprintln(stdout, "no differences")
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "CLASS\tORDER NO\tORDER\tTXN\tOP\tTHEIRS\tAMOUNT\tOURS\tAMOUNT\tCURRENCY\tLEDGER\tBOOKED IN\tREVERSIBLE OUT\t NOTE\t")
	for _, d := range ds {
		cells := differenceCells(d, true)
		for i, s := range cells {
			cells[i] = cell(s)
		}
		cells[len(cells)-1] = " " + cells[len(cells)-1]
		for _, s := range cells {
			fmt.Fprint(w, s, "\t")
		}
		fmt.Fprintln(w)
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	return 0
}

func writeDifferencesCSV(stdout io.Writer, ds []*ledgerv1.StatementDifference) int {
	w := csv.NewWriter(stdout)
	_ = w.Write(statementHeader)
	for _, d := range ds {
		// The channel's text (order number, txn, note) may start like a formula: escaped as in
		// every CSV the ledger writes for finance tools.
		cells := differenceCells(d, false)
		for i := range cells {
			cells[i] = accounting.CSVCell(cells[i])
		}
		_ = w.Write(cells)
	}
	w.Flush()
	if w.Error() != nil {
		return 2
	}
	return 0
}

// statementExceptions lists statement records (exceptions --statements).
func statementExceptions(c *payCmd, all bool, limit uint, after *ledgerv1.StatementKey) int {
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ListExceptions(ctx, &ledgerv1.ListExceptionsRequest{IncludeResolved: all, Statements: true,
			AfterStatement: after, Limit: uint32(limit)})
		if err != nil {
			return c.rpcError(err, "")
		}
		if code := printStatementRecords(c.stdout, resp.GetStatementExceptions()); code != 0 {
			return code
		}
		if n := resp.GetNextAfterStatement(); n != nil {
			fmt.Fprintf(c.stderr, "more: ledgerctl exceptions --statements --after-channel %s --after-date %s --after-txn %s\n",
				n.GetChannel(), n.GetDate(), n.GetTxn())
		}
		return 0
	})
}

// printStatementRecords prints statement records as a table, the amounts in the line's
// currency (minor units when it is not one ISO 4217 lists: currency "-").
func printStatementRecords(stdout io.Writer, xs []*ledgerv1.StatementException) int {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	rows := [][]string{{"CHANNEL", "DATE", "TXN", "CLASS", "STATE", "ORDER NO", "THEIRS", "AMOUNT", "OURS", "AMOUNT", "CURRENCY",
		"BOOKED IN", "REVERSIBLE OUT", "NOTE"}}
	for _, x := range xs {
		k, d := x.GetKey(), x.GetDifference()
		cur := money.Of(d.GetCurrency())
		rows = append(rows, []string{cell(k.GetChannel()), cell(k.GetDate()), cell(k.GetTxn()),
			enumName(d.GetClass().String(), "STATEMENT_CLASS_"), enumName(x.GetState().String(), "EXCEPTION_STATE_"),
			cell(d.GetOrderNo()), cell(d.GetTheirStatus()), cur.FormatUint64(d.GetTheirAmount()), cell(d.GetOurStatus()),
			cur.FormatUint64(d.GetOurAmount()), cur.Label(), cur.FormatUint64(d.GetBookedIn()),
			cur.FormatUint64(d.GetReversibleOut()), cell(d.GetNote())})
	}
	accounting.AlignRight(rows, 7, 9, 11, 12)
	for _, row := range rows {
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	return 0
}

// resolveStatement applies an operator's resolution to a statement record. Exit 1 when the
// result is not ok (printed on stderr).
func resolveStatement(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("resolve-statement", stdout, stderr)
	note := c.fs.String("note", "", "the operator's note, kept on the record (at most 256 bytes)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) != 4 {
		return c.fail("want CHANNEL DATE TXN close|reverse, not %q", c.args)
	}
	how := map[string]ledgerv1.Resolution{"close": ledgerv1.Resolution_RESOLUTION_CLOSE,
		"reverse": ledgerv1.Resolution_RESOLUTION_REVERSE}[c.args[3]]
	if how == 0 {
		return c.fail("resolution %q: want close or reverse", c.args[3])
	}
	key := &ledgerv1.StatementKey{Channel: c.args[0], Date: c.args[1], Txn: c.args[2]}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ResolveException(ctx, &ledgerv1.ResolveExceptionRequest{Statement: key, Resolution: how, Note: *note})
		if err != nil {
			return c.rpcError(err, "")
		}
		res := enumName(resp.GetResult().String(), "PAYMENT_RESULT_")
		if resp.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_OK {
			fmt.Fprintf(stderr, "resolve-statement: %s %s %s: %s\n", key.Channel, key.Date, key.Txn, res)
			return 1
		}
		fmt.Fprintln(stdout, res)
		return 0
	})
}
