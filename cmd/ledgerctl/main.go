// Command ledgerctl is the operator's command line.
//
//	ledgerctl verify --data-dir DIR     verify a stopped store
//	ledgerctl verify --addr HOST:PORT   verify a running ledgerd (on a consistent snapshot)
//
// verify recomputes every balance from the journal and checks the invariants of DESIGN.md
// (double entry per ledger, balances equal their postings, no overdraft, transit equals the
// outbox). It prints what differs and exits 0 when clean, 1 when it found problems, 2 when it
// could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  ledgerctl verify --data-dir DIR     verify a stopped store
  ledgerctl verify --addr HOST:PORT   verify a running ledgerd
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("ledgerctl verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the store of a stopped ledgerd")
	addr := fs.String("addr", "", "the gRPC address of a running ledgerd")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for a running ledgerd")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if (*dataDir == "") == (*addr == "") {
		fmt.Fprint(stderr, "give exactly one of --data-dir and --addr\n"+usage)
		return 2
	}
	var rep storage.Report
	var err error
	if *dataDir != "" {
		rep, err = verifyStore(*dataDir)
	} else {
		rep, err = verifyRemote(*addr, *timeout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 2
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, p)
	}
	fmt.Fprintf(stdout, "verified %d accounts, %d postings, %d legs in flight: %d problems\n",
		rep.Accounts, rep.Postings, rep.OutboxLegs, len(rep.Problems))
	if len(rep.Problems) > 0 {
		return 1
	}
	return 0
}

func verifyStore(dir string) (storage.Report, error) {
	if _, err := os.Stat(dir); err != nil {
		return storage.Report{}, err
	}
	store, err := storage.Open(dir, storage.Options{})
	if err != nil {
		return storage.Report{}, err
	}
	snap := store.Snapshot()
	rep, err := storage.Verify(snap, store.Shards())
	return rep, errors.Join(err, snap.Close(), store.Close())
}

func verifyRemote(addr string, timeout time.Duration) (storage.Report, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return storage.Report{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := ledgerv1.NewAdminServiceClient(conn).Verify(ctx, &ledgerv1.VerifyRequest{})
	if err != nil {
		return storage.Report{}, err
	}
	return storage.Report{Problems: resp.GetProblems(), Accounts: resp.GetAccounts(),
		Postings: resp.GetPostings(), OutboxLegs: resp.GetOutboxLegs()}, nil
}
