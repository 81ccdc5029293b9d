package actors

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// TestPiecesUnderLoad: many concurrent multi-shard requests, each part run in pieces of 2
// with the real committer (Host.Durable racing it) and a book that trims often: every
// transfer a reply calls ok is in storage when the reply arrives, and the books balance.
func TestPiecesUnderLoad(t *testing.T) {
	const shards = 3
	store := openStore(t, vfs.NewMem(), shards)
	defer store.Close()
	l, err := Start(store, Config{Shards: shards, PieceEvents: 2, TransferCacheEntriesMax: 8,
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	const accounts = 9
	var as []ledger.Account
	for id := uint64(1); id <= accounts; id++ {
		a := ledger.Account{ID: id, Ledger: 1, Code: 1}
		as = append(as, a)
	}
	openAccounts(t, l, as...)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 17))
			for range 30 {
				ts := make([]ledger.Transfer, 40)
				for i := range ts {
					ts[i] = ledger.Transfer{ID: 1 + rng.Uint64N(3000), DebitAccountID: 1 + rng.Uint64N(accounts),
						CreditAccountID: 1 + rng.Uint64N(accounts), Amount: 1 + rng.Uint64N(9), Ledger: 1, Code: 1}
					if rng.IntN(5) == 0 {
						ts[i].Flags |= ledger.TransferLinked
					}
				}
				rs, err := l.CreateTransfers(ts)
				if err != nil {
					continue // overloaded: refused whole
				}
				var ok []uint64
				for i, r := range rs {
					if r == ledger.ResultOK {
						ok = append(ok, ts[i].ID)
					}
				}
				found := 0
				if err := l.Read(func(v *storage.Reader) error {
					return v.Transfers(ok, func(ledger.Transfer) { found++ })
				}); err != nil {
					t.Error(err)
					return
				}
				if found != len(ok) {
					t.Errorf("a reply said ok to %d transfers; %d of them in storage", len(ok), found)
					return
				}
			}
		}()
	}
	wg.Wait()
	var debits, credits ledger.Uint128
	for id := uint64(1); id <= accounts; id++ {
		b := balanceOf(t, l, id)
		debits, _ = debits.Add(b.DebitsPosted)
		credits, _ = credits.Add(b.CreditsPosted)
	}
	if debits != credits {
		t.Errorf("debits %v, credits %v", debits, credits)
	}
	t.Logf("debits %v credits %v, %d commits", debits, credits, l.stats.Counters.Commits.Load())
}
