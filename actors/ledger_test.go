package actors

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

func openStore(t *testing.T, fs vfs.FS, shards uint32) *storage.Store {
	t.Helper()
	s, err := storage.Open("db", storage.Options{FS: fs, Shards: shards, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startLedger(t *testing.T, store *storage.Store) *Ledger {
	t.Helper()
	l, err := Start(store, Config{Shards: store.Shards(), Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// openAccounts opens accounts and fails the test unless every one is opened.
func openAccounts(t *testing.T, l *Ledger, as ...ledger.Account) {
	t.Helper()
	rs, err := l.CreateAccounts(as)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r != ledger.AccountResultOK {
			t.Fatalf("account %d: %v", as[i].ID, r)
		}
	}
}

func verify(t *testing.T, store *storage.Store) {
	t.Helper()
	snap := store.Snapshot()
	defer snap.Close()
	rep, err := storage.Verify(snap, store.Shards())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Error(p)
	}
}

// TestSplitTransfersSurviveRestart: accounts on two shards, transfers both ways, a clean
// stop, and a restart that sees every balance and verifies clean.
func TestSplitTransfersSurviveRestart(t *testing.T) {
	fs := vfs.NewMem()
	store := openStore(t, fs, 2)
	l := startLedger(t, store)
	var as []ledger.Account
	for id := uint64(1); id <= 8; id++ {
		as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 1})
	}
	openAccounts(t, l, as...)
	var ts []ledger.Transfer
	for id := uint64(1); id <= 100; id++ {
		ts = append(ts, ledger.Transfer{ID: id, DebitAccountID: id%8 + 1, CreditAccountID: (id+3)%8 + 1,
			Amount: id, Ledger: 1, Code: 1})
	}
	trs, err := l.CreateTransfers(ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range trs {
		if r != ledger.ResultOK {
			t.Fatalf("transfer %d: %v", ts[i].ID, r)
		}
	}
	// Every acknowledged split transfer shows on both sides at once.
	want := map[uint64]ledger.Balance{}
	for _, tr := range ts {
		d, c := want[tr.DebitAccountID], want[tr.CreditAccountID]
		d.DebitsPosted, _ = d.DebitsPosted.Add64(tr.Amount)
		c.CreditsPosted, _ = c.CreditsPosted.Add64(tr.Amount)
		want[tr.DebitAccountID], want[tr.CreditAccountID] = d, c
	}
	check := func() {
		v := store.Live()
		for id, b := range want {
			a, found, err := v.Account(id)
			if err != nil || !found || a.Balance != b {
				t.Errorf("account %d: %+v %v %v, want %+v", id, a.Balance, found, err, b)
			}
		}
	}
	check()
	trs, _ = l.CreateTransfers(ts[:1])
	if trs[0] != ledger.ResultExists {
		t.Errorf("resend: %v", trs[0])
	}
	// Once every answer is taken, the credit shards forget their records of the legs.
	waitFor(t, func() bool {
		n := 0
		_ = store.Live().ForEachLegResult(func(ledger.LegResult) error { n++; return nil })
		return n == 0
	})
	l.Stop()
	verify(t, store)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, fs, 2)
	l = startLedger(t, store)
	check()
	trs, _ = l.CreateTransfers(ts[50:51])
	if trs[0] != ledger.ResultExists {
		t.Errorf("resend after restart: %v", trs[0])
	}
	l.Stop()
	verify(t, store)
	_ = store.Close()
}

// TestFullShardRefusesWholeRequest: when one shard has as many requests as it admits, a
// request that needs it is refused whole (nothing of it runs), and the others still run.
func TestFullShardRefusesWholeRequest(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	l := startLedger(t, store)
	defer l.Stop()
	var as []ledger.Account
	for id := uint64(1); id <= 8; id++ {
		as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 1})
	}
	if _, err := l.CreateAccounts(as); err != nil {
		t.Fatal(err)
	}
	full := ledger.ShardOf(1, 2)
	var other uint64
	for id := uint64(2); id <= 8; id++ {
		if ledger.ShardOf(id, 2) != full {
			other = id
		}
	}
	one := make([]int, l.cfg.Shards)
	one[full] = 1
	for range l.cfg.ShardRequestsMax { // as if that many were waiting
		l.admit(one)
	}
	ts := []ledger.Transfer{
		{ID: 1, DebitAccountID: other, CreditAccountID: 1, Amount: 5, Ledger: 1, Code: 1},
		{ID: 2, DebitAccountID: 1, CreditAccountID: other, Amount: 5, Ledger: 1, Code: 1},
	}
	if _, err := l.CreateTransfers(ts); err != ErrOverloaded {
		t.Fatalf("full shard: %v", err)
	}
	if got := l.admitted[1-full].Requests(); got != 0 {
		t.Errorf("the other shard's admission was not released: %d", got)
	}
	for _, id := range []uint64{1, 2} {
		if _, found, _ := store.Live().Transfer(id); found {
			t.Errorf("transfer %d of a refused request was written", id)
		}
	}
	for range l.cfg.ShardRequestsMax {
		l.admitted[full].Done(1)
	}
	rs, err := l.CreateTransfers(ts)
	if err != nil || rs[0] != ledger.ResultOK || rs[1] != ledger.ResultOK {
		t.Fatalf("after the shard drained: %v %v", rs, err)
	}
}

// TestBrokenInvariantIsFatal: a shard that meets a broken invariant calls the fatal handler
// (which stops the process) instead of carrying on or being restarted empty.
func TestBrokenInvariantIsFatal(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	fatal := make(chan error, 1)
	l, err := Start(store, Config{Shards: 2, Fatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	// A leg for an account another shard owns can only come from a bug.
	owner := ledger.ShardOf(1, 2)
	l.system.Root.Send(l.pids[1-owner], &driver.Legs{From: owner, Legs: []ledger.Leg{{
		LegKey: ledger.LegKey{TransferID: 9, Kind: ledger.LegCreditPost}, Account: 1, Amount: 1, Ledger: 1}}})
	select {
	case err := <-fatal:
		if !strings.Contains(err.Error(), "INVARIANT") {
			t.Errorf("fatal for another reason: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a broken invariant was not fatal")
	}
}
