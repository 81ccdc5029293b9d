package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// endOfDay runs end of day on a running ledgerd and prints its phases and the day's trial
// balance. Exit 0: the day is closed; 1: not closed (trial balance failed, drain timed out);
// 2: could not run (bad date, the day before not closed, ledgerd unreachable).
func endOfDay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledgerctl eod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7070", "the gRPC address of a running ledgerd")
	date := fs.String("date", "", "the accounting day to close, YYYY-MM-DD (empty: the current one)")
	status := fs.Bool("status", false, "print the current accounting day and the last end of day, run nothing")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for ledgerd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		return 0
	}
	resp, err := admin.RunEndOfDay(ctx, &ledgerv1.RunEndOfDayRequest{Date: *date})
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
	fmt.Fprintf(stdout, "%s: %s (%s)\n", resp.GetDate(), resp.GetOutcome(), resp.GetPhase())
	if !resp.GetPassed() {
		return 1
	}
	return 0
}
