package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// TestEndOfDayKilled: ledgerd on --first-day takes transfers; ledgerctl eod runs and ledgerd
// is killed (SIGKILL) while it runs; after a restart ledgerctl eod for the day closes it
// (resumed, or answered from its record) with a passing trial balance, the status shows the
// next day, and transfers after the restart are closed with that next day.
func TestEndOfDayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ledgerd := build(t, dir, "./cmd/ledgerd")
	ledgerctl := build(t, dir, "./cmd/ledgerctl")
	dataDir := filepath.Join(dir, "data")
	ctx := context.Background()
	pay := func(client ledgerv1.LedgerServiceClient, from uint64) {
		t.Helper()
		for b := range 4 {
			var ts []*ledgerv1.Transfer
			for i := range 200 {
				id := from + uint64(b*200+i)
				user := 10 + id%20
				tr := &ledgerv1.Transfer{Id: id, DebitAccountId: 1, CreditAccountId: user, Amount: 1 + id%97, Ledger: 1, Code: 1}
				if i%2 == 1 {
					tr.DebitAccountId, tr.CreditAccountId = user, 10+(id+7)%20
				}
				ts = append(ts, tr)
			}
			resp, err := client.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts})
			if err != nil || len(resp.GetResults()) > 0 {
				t.Fatalf("transfers: %v %v", resp.GetResults(), err)
			}
		}
	}
	ctl := func(addr string, args ...string) (int, string) {
		cmd := exec.Command(ledgerctl, append([]string{"eod", "--addr", addr, "--timeout", "20s"}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}

	srv := start(t, ledgerd, dataDir, "--first-day", "2026-11-26")
	client, _, closeConn := dial(t, srv)
	accounts := []*ledgerv1.Account{{Id: 1, Ledger: 1, Code: 1122, Flags: &ledgerv1.AccountFlags{Internal: true}}}
	for id := uint64(10); id < 30; id++ {
		accounts = append(accounts, &ledgerv1.Account{Id: id, Ledger: 1, Code: 2001})
	}
	if resp, err := client.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: accounts}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("accounts: %v %v", resp.GetResults(), err)
	}
	pay(client, 1000)
	closeConn()
	// --early: the days of this test end (UTC) whenever it runs (the wall clock only decides
	// whether a day may close, so the dates are named and closed early).
	run := exec.Command(ledgerctl, "eod", "--addr", srv.admin, "--timeout", "20s", "--date", "2026-11-26", "--early")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Millisecond)
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	_ = run.Wait() // closed, or cut off by the kill: either is fine here

	srv = start(t, ledgerd, dataDir, "--first-day", "2026-12-31") // a store with days keeps its own
	defer func() { _ = srv.cmd.Process.Kill(); <-srv.exited }()
	code, out := ctl(srv.admin, "--date", "2026-11-26", "--early")
	if code != 0 || !strings.Contains(out, "trial balance of 2026-11-26: PASSED\n") || !strings.HasSuffix(out, "2026-11-26: closed (archived)\n") {
		t.Fatalf("eod after the kill: exit %d\n%s", code, out)
	}
	code, out = ctl(srv.admin, "--status")
	if code != 0 || out != "current accounting day  2026-11-27\nlast end of day         2026-11-26: archived, closed\n" {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	client, _, closeConn = dial(t, srv)
	defer closeConn()
	pay(client, 10000)
	code, out = ctl(srv.admin, "--date", "2026-11-27", "--early")
	if code != 0 || !strings.Contains(out, "trial balance of 2026-11-27: PASSED\n") || !strings.HasSuffix(out, "2026-11-27: closed (archived)\n") {
		t.Fatalf("eod of the next day: exit %d\n%s", code, out)
	}
}
