package actors

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
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
	rs, err := l.CreateAccounts(as)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r != ledger.AccountResultOK {
			t.Fatalf("account %d: %v", as[i].ID, r)
		}
	}
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
		d.DebitsPosted += tr.Amount
		c.CreditsPosted += tr.Amount
		want[tr.DebitAccountID], want[tr.CreditAccountID] = d, c
	}
	check := func() {
		v := store.View()
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
