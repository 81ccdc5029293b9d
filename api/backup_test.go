package api

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// TestBackupUnderLoad: a backup taken while transfers flow on four shards holds every
// transfer answered before it was asked for, verifies clean (balances recomputed from its
// journal, split legs in flight included), and opens as a store of its own; bad names, an
// existing directory, a second backup at once and a server without a root are refused and
// write nothing.
func TestBackupUnderLoad(t *testing.T) {
	root := t.TempDir()
	storeDir := filepath.Join(t.TempDir(), "db")
	store, err := storage.Open(storeDir, storage.Options{Shards: 4, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 4, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		l.Stop()
		_ = store.Close()
	}()
	s := NewService(l, nil, WithBackups(root, storeDir, nil))
	ctx := context.Background()
	const accounts = 64
	var as []*ledgerv1.Account
	for id := uint64(1); id <= accounts; id++ {
		as = append(as, &ledgerv1.Account{Id: id, Ledger: 1, Code: 1})
	}
	if resp, err := s.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: as}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("accounts: %v %v", resp, err)
	}

	// Load: four writers, each its own ids, batches of 50 between random accounts.
	var (
		mu    sync.Mutex
		acked []uint64
		next  atomic.Uint64
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := uint64(0); !stop.Load(); n++ {
				var ts []*ledgerv1.Transfer
				var ids []uint64
				for range 50 {
					id := next.Add(1)
					d := 1 + (id*7+uint64(w))%accounts
					c := 1 + (id*13+n)%accounts
					if c == d {
						c = 1 + c%accounts
					}
					ts = append(ts, &ledgerv1.Transfer{Id: id, DebitAccountId: d, CreditAccountId: c, Amount: 1 + id%100, Ledger: 1, Code: 1})
					ids = append(ids, id)
				}
				resp, err := s.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts})
				if err != nil || len(resp.GetResults()) > 0 {
					t.Errorf("transfers: %v %v", resp.GetResults(), err)
					return
				}
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 5000 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	before := append([]uint64(nil), acked...) // answered before the backup was asked for
	mu.Unlock()
	// A backup of this name cut off before (a kill) left its hidden partial directory.
	if err := os.MkdirAll(filepath.Join(root, ".nightly-1.partial", "junk"), 0o750); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Backup(ctx, &ledgerv1.BackupRequest{Name: "nightly-1", Verify: true})
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPath() != filepath.Join(root, "nightly-1") || !resp.GetVerified() || len(resp.GetProblems()) > 0 || resp.GetFiles() == 0 {
		t.Fatalf("backup: %+v", resp)
	}
	if _, err := os.Stat(filepath.Join(root, ".nightly-1.partial")); !os.IsNotExist(err) {
		t.Fatalf("the partial directory is still there: %v", err)
	}
	if done, ok := storage.BackupCompleted(resp.GetPath()); !ok || time.Since(done) > time.Minute {
		t.Fatalf("the backup's marker: %v %v", done, ok)
	}

	copyStore, err := storage.Open(resp.GetPath(), storage.Options{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// Closed before the refusals below count the root's entries: the open copy's background
	// work (obsolete files deleted) changes them.
	copyClosed := false
	defer func() {
		if !copyClosed {
			_ = copyStore.Close()
		}
	}()
	if copyStore.Shards() != 4 {
		t.Fatalf("the copy has %d shards", copyStore.Shards())
	}
	v := copyStore.Snapshot()
	found := map[uint64]bool{}
	for i := 0; i < len(before); i += 8190 {
		if err := v.Transfers(before[i:min(i+8190, len(before))], func(tr ledger.Transfer) { found[tr.ID] = true }); err != nil {
			t.Fatal(err)
		}
	}
	_ = v.Close()
	for _, id := range before {
		if !found[id] {
			t.Fatalf("transfer %d was answered before the backup and is not in it (%d of %d found)", id, len(found), len(before))
		}
	}
	v = copyStore.Snapshot()
	rep, err := storage.Verify(v, 4)
	_ = v.Close()
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("the opened copy: %v %v", rep.Problems, err)
	}
	copyClosed = true
	if err := copyStore.Close(); err != nil {
		t.Fatal(err)
	}

	// Refusals, each writing nothing.
	entries := func() int {
		n := 0
		_ = filepath.WalkDir(root, func(string, os.DirEntry, error) error { n++; return nil })
		return n
	}
	had := 0
	if err := os.Symlink(t.TempDir(), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	had = entries()
	for name, want := range map[string]codes.Code{"": codes.InvalidArgument, "../out": codes.InvalidArgument,
		"/tmp/x": codes.InvalidArgument, "nightly-1": codes.AlreadyExists, "a/../../b": codes.InvalidArgument,
		// Inside an earlier backup (which a name Pebble reads as its marker would spoil), through a
		// link out of the root, hidden (a partial backup's), too long.
		"nightly-1/marker.format-version.000099.025": codes.InvalidArgument, "link/escaped": codes.InvalidArgument,
		"link": codes.AlreadyExists, ".nightly-2.partial": codes.InvalidArgument, strings.Repeat("a", 129): codes.InvalidArgument} {
		if _, err := s.Backup(ctx, &ledgerv1.BackupRequest{Name: name}); status.Code(err) != want {
			t.Errorf("backup %q: %v, want %v", name, err, want)
		}
	}
	s.backups.running.Lock()
	if _, err := s.Backup(ctx, &ledgerv1.BackupRequest{Name: "second"}); status.Code(err) != codes.Aborted {
		t.Errorf("a second backup at once: %v", err)
	}
	s.backups.running.Unlock()
	if _, err := NewService(l, nil).Backup(ctx, &ledgerv1.BackupRequest{Name: "x"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("backups off: %v", err)
	}
	// A restart reads the time of the newest complete backup back (the stale-backup alert
	// must not fire after every restart).
	if got := testutil.ToFloat64(NewService(l, nil, WithBackups(root, storeDir, nil)).backups.metrics.lastSuccess); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("the last backup after a restart: %v", got)
	}
	// A root holding the store (or inside it): refused, nothing written.
	for _, r := range []string{filepath.Dir(storeDir), filepath.Join(storeDir, "backups")} {
		if _, err := NewService(l, nil, WithBackups(r, storeDir, nil)).Backup(ctx, &ledgerv1.BackupRequest{Name: "x"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("root %s and store %s: %v", r, storeDir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(storeDir), "x")); !os.IsNotExist(err) {
		t.Errorf("a refused backup wrote beside the store: %v", err)
	}
	if n := entries(); n != had {
		t.Errorf("refused backups wrote %d entries", n-had)
	}
}
