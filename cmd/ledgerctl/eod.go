package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ledgercore/ledger/client"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// endOfDay runs end of day on a running ledgerd and prints its phases and the day's
// trial balance, or (--accept) accepts a failed day's differences with a note. Exit 0: the
// day is archived (closed, or accepted with differences); 1: not archived (trial balance
// failed, drain timed out, waiting for an earlier day); 2: could not run (bad date or flags,
// the day not ended without --early, nothing to accept, ledgerd unreachable).
func endOfDay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledgerctl eod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", adminAddrDefault, adminAddrHelp)
	date := fs.String("date", "", "the accounting day to close, YYYY-MM-DD (empty: every day that is due, in order: those left open, then each day whose calendar end, UTC, has passed)")
	status := fs.Bool("status", false, "print the current accounting day, the last end of day and the days not archived, run nothing")
	early := fs.Bool("early", false, "close the day even though its calendar end (UTC) has not come (logged and recorded)")
	accept := fs.Bool("accept", false, "accept the differences of --date, whose trial balance failed, with --note: the day is archived as accepted with differences")
	note := fs.String("note", "", "with --accept: why the differences are accepted (required, recorded)")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for ledgerd")
	var sec client.Security
	sec.RegisterFlags(fs)
	rest, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch {
	case *accept && (*date == "" || *note == "" || *early || *status):
		fmt.Fprintln(stderr, "eod: --accept needs --date and --note, and takes neither --early nor --status")
		return 2
	case !*accept && *note != "":
		fmt.Fprintln(stderr, "eod: --note goes with --accept")
		return 2
	}
	conn, err := dialAdmin(*addr, sec)
	if err != nil {
		fmt.Fprintf(stderr, "eod: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	admin := ledgerv1.NewAdminServiceClient(conn)
	if *status {
		st, err := admin.GetEndOfDayStatus(ctx, &ledgerv1.GetEndOfDayStatusRequest{})
		if err != nil {
			fmt.Fprintf(stderr, "eod: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "current accounting day  %s\n", st.GetCurrentDate())
		if st.GetLastDate() != "" {
			fmt.Fprintf(stdout, "last end of day         %s: %s, %s\n", st.GetLastDate(), st.GetLastPhase(), st.GetLastOutcome())
		}
		for _, o := range st.GetOpen() {
			fmt.Fprintf(stdout, "not archived            %s\n", o)
		}
		return 0
	}
	var resp *ledgerv1.RunEndOfDayResponse
	if *accept {
		var acc *ledgerv1.AcceptEndOfDayResponse
		acc, err = admin.AcceptEndOfDay(ctx, &ledgerv1.AcceptEndOfDayRequest{Date: *date, Note: *note})
		resp = acc.GetResult()
	} else {
		resp, err = admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: *date, Early: *early})
	}
	if err != nil {
		fmt.Fprintf(stderr, "eod: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "end of day %s\n", resp.GetDate())
	for _, s := range resp.GetSteps() {
		fmt.Fprintf(stdout, "  %s\n", s)
	}
	for _, s := range resp.GetStuck() {
		fmt.Fprintf(stdout, "  stuck: %s\n", s)
	}
	if r := resp.GetReport(); r != "" {
		fmt.Fprintf(stdout, "\n%s", r)
	}
	if resp.GetNote() != "" {
		fmt.Fprintf(stdout, "accepted with the note: %s\n", resp.GetNote())
	}
	if resp.GetEarly() {
		fmt.Fprintf(stdout, "closed early, before its calendar end, on request\n")
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", resp.GetDate(), resp.GetOutcome(), resp.GetPhase())
	if !resp.GetArchived() {
		return 1
	}
	return 0
}
