package actors

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
	"github.com/ledgercore/ledger/storage/storagetest"
)

// TestFailedCommitStopsAcknowledgements: when the disk fails a WAL sync, the round is not
// acknowledged (its request gets no answer), the shard stops with an error that says so and
// counts it, a read meanwhile fails (it cannot sync the WAL) rather than show the failed round,
// and the process exits (a child process here, on a real directory); a restart on what the
// disk kept recovers a clean ledger that takes new transfers.
func TestFailedCommitStopsAcknowledgements(t *testing.T) {
	if dir := os.Getenv("LEDGER_TEST_FAILING_DISK"); dir != "" {
		failingDiskChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailedCommitStopsAcknowledgements$", "-test.timeout=1m")
	cmd.Env = append(os.Environ(), "LEDGER_TEST_FAILING_DISK="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 70 {
		t.Fatalf("child: %v, want exit status 70\n%s", err, out)
	}
	if s := string(out); strings.Contains(s, "ANSWERED") || !strings.Contains(s, "not durable, nothing of it acknowledged") ||
		!strings.Contains(s, "disk on fire") || !strings.Contains(s, "storage errors 1") ||
		!strings.Contains(s, "READ storage: sync for a durable read: storage: write failed") {
		t.Fatalf("child output does not show the failure as it should:\n%s", out)
	}

	t.Logf("the child, whose disk failed:\n%s", out)
	store, err := storage.Open(dir, storage.Options{Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l := startLedger(t, store)
	defer l.Stop()
	rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 8, DebitAccountID: 1, CreditAccountID: 2, Amount: 3, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK {
		t.Fatalf("after recovery: %v %v", rs, err)
	}
	snap := store.Snapshot()
	defer snap.Close()
	rep, err := storage.Verify(snap, 1)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify after recovery: %v %v", rep.Problems, err)
	}
}

// failingDiskChild runs a ledger whose disk starts failing WAL syncs; its fatal handler
// reports and exits as the default one does.
func failingDiskChild(dir string) {
	fs := storagetest.NewStallFS(vfs.Default)
	store, err := storage.Open(dir, storage.Options{FS: fs, Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var l *Ledger
	read := make(chan struct{}) // the read below has printed its answer
	l, err = Start(store, Config{Shards: 1, Fatal: func(err error) {
		fmt.Printf("FATAL %v (write error: %v), storage errors %d\n", err, errors.Is(err, storage.ErrWrite),
			l.Stats().StorageErrors.Load())
		select { // let the read below meet the failed store, however loaded the machine
		case <-read:
		case <-time.After(20 * time.Second):
		}
		os.Exit(70)
	}})
	if err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	rs, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.AccountResultOK || rs[1] != ledger.AccountResultOK {
		fmt.Println("accounts:", rs, err)
		os.Exit(1)
	}
	fs.Fail(errors.New("disk on fire"))
	go func() { // a read meanwhile: an error (the WAL cannot be synced), never a panic
		time.Sleep(20 * time.Millisecond)
		err := l.Read(func(*storage.Reader) error { return nil })
		fmt.Printf("READ %v\n", err)
		close(read)
	}()
	ts, err := l.CreateTransfers([]ledger.Transfer{{ID: 7, DebitAccountID: 1, CreditAccountID: 2, Amount: 5, Ledger: 1, Code: 1}})
	fmt.Println("ANSWERED", ts, err)
	time.Sleep(time.Second)
	os.Exit(0)
}
