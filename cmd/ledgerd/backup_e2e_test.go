package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// TestBackupOfARunningServer: `ledgerctl backup --verify` against ledgerd under load writes
// a copy that verifies clean; ledgerd started on the copy serves every transfer answered
// before the backup was asked for, and verifies clean too.
func TestBackupOfARunningServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ledgerd := build(t, dir, "./cmd/ledgerd")
	ledgerctl := build(t, dir, "./cmd/ledgerctl")
	root := filepath.Join(dir, "backups")
	srv := start(t, ledgerd, filepath.Join(dir, "data"), "--backup-root", root)
	defer func() { _ = srv.cmd.Process.Kill() }()
	client, _, closeConn := dial(t, srv)
	defer closeConn()
	ctx := context.Background()
	var as []*ledgerv1.Account
	for id := uint64(1); id <= e2eAccounts; id++ {
		as = append(as, &ledgerv1.Account{Id: id, Ledger: 1, Code: 1})
	}
	if _, err := client.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: as}); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []uint64
		next  atomic.Uint64
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var ts []*ledgerv1.Transfer
				for range 100 {
					id := next.Add(1)
					ts = append(ts, &ledgerv1.Transfer{Id: id, DebitAccountId: 1 + id%e2eAccounts, CreditAccountId: 1 + (id+1+id/e2eAccounts)%e2eAccounts,
						Amount: 1 + id%1000, Ledger: 1, Code: 1})
				}
				if ts[0].DebitAccountId == ts[0].CreditAccountId {
					ts[0].CreditAccountId = 1 + ts[0].CreditAccountId%e2eAccounts
				}
				resp, err := client.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts})
				if err != nil {
					t.Errorf("transfers: %v", err)
					return
				}
				failed := map[uint32]bool{}
				for _, r := range resp.GetResults() {
					failed[r.GetIndex()] = true
				}
				mu.Lock()
				for i, tr := range ts {
					if !failed[uint32(i)] {
						acked = append(acked, tr.Id)
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	mu.Lock()
	before := append([]uint64(nil), acked...)
	mu.Unlock()
	out, err := exec.Command(ledgerctl, "backup", "--addr", srv.admin, "--verify", "first").CombinedOutput()
	stop.Store(true)
	wg.Wait()
	if err != nil || !regexp.MustCompile(`(?m)^verified: clean$`).Match(out) {
		t.Fatalf("ledgerctl backup: %v\n%s", err, out)
	}
	if len(before) < 1000 {
		t.Fatalf("only %d transfers before the backup: no load", len(before))
	}
	m := regexp.MustCompile(`^backup (\S+): `).FindSubmatch(out)
	if m == nil || string(m[1]) != filepath.Join(root, "first") {
		t.Fatalf("the backup's path: %s", out)
	}
	t.Logf("%s(%d transfers answered before it)", out, len(before))

	restored := start(t, ledgerd, string(m[1]))
	defer func() { _ = restored.cmd.Process.Kill() }()
	rc, admin, closeRestored := dial(t, restored)
	defer closeRestored()
	for i := 0; i < len(before); i += 8190 {
		ids := before[i:min(i+8190, len(before))]
		resp, err := rc.LookupTransfers(ctx, &ledgerv1.LookupTransfersRequest{Ids: ids})
		if err != nil || len(resp.GetTransfers()) != len(ids) {
			t.Fatalf("the restored server has %d of %d transfers answered before the backup: %v", len(resp.GetTransfers()), len(ids), err)
		}
	}
	if v, err := admin.Verify(ctx, &ledgerv1.VerifyRequest{}); err != nil || len(v.GetProblems()) > 0 {
		t.Fatalf("verify on the restored server: %v %v", v.GetProblems(), err)
	}
	if out, err := exec.Command(ledgerctl, "backup", "--addr", srv.admin, "first").CombinedOutput(); err == nil {
		t.Fatalf("a second backup into the same directory: %s", out)
	}
}
