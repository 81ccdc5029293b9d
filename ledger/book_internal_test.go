package ledger

import "testing"

// TestExpiryHeapCompacted: the expiry heap drops an entry when it comes due; holds that were
// undone with a failed chain (or posted, or voided) leave entries behind until then, which
// may be years. Trim compacts the heap once it has doubled, so it stays within twice the
// live holds.
func TestExpiryHeapCompacted(t *testing.T) {
	b := NewBook(0, 1)
	b.LoadAccount(Account{ID: 1, Ledger: 1, Code: 1})
	b.LoadAccount(Account{ID: 2, Ledger: 1, Code: 1, Flags: AccountDebitsMustNotExceedCredits})
	var fx Effects
	id := uint64(100)
	const chains = 3 * expiriesCompactMin
	for i := 0; i < chains; i++ {
		// a chain: a long hold from 1 that passes, then a transfer from 2 that overdraws it
		id += 2
		ts := []Transfer{
			{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1,
				Flags: TransferPending | TransferLinked, Timeout: ^uint32(0)},
			{ID: id + 1, DebitAccountID: 2, CreditAccountID: 1, Amount: 10, Ledger: 1, Code: 1},
		}
		rs := make([]TransferResult, 2)
		fx.Reset()
		b.CreateTransfers(1e12+uint64(i), ts, rs, &fx)
		if rs[1] != ResultExceedsCredits {
			t.Fatalf("chain: %v", rs)
		}
	}
	fx.Reset()
	rs := make([]TransferResult, 1)
	b.CreateTransfers(2e12, []Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1,
		Code: 1, Flags: TransferPending, Timeout: 60}}, rs, &fx)
	if !b.TrimNeeded() {
		t.Fatalf("%d armed expiries, and no trim asked for", len(b.expiries))
	}
	b.Trim()
	if len(b.expiries) != 1 || b.NextExpiry() != 2e12+60e9 {
		t.Fatalf("after Trim: %d armed expiries, next at %d; want the one live hold's", len(b.expiries), b.NextExpiry())
	}
}

// TestTrimsSpacedByWhatTheyKeep: a book that keeps more open holds than its cache limit trims
// once as many new transfers came as it keeps, not after every limit's worth (each Trim scans
// them all; one called sooner, as a quiet shard calls it, does nothing), and a Trim then frees
// the finished ones.
func TestTrimsSpacedByWhatTheyKeep(t *testing.T) {
	b := NewBook(0, 1)
	b.SetCacheLimit(4)
	b.LoadAccount(Account{ID: 1, Ledger: 1, Code: 1})
	b.LoadAccount(Account{ID: 2, Ledger: 1, Code: 1})
	var fx Effects
	run := func(from uint64, n int, flags TransferFlags) {
		t.Helper()
		ts := make([]Transfer, n)
		for i := range ts {
			ts[i] = Transfer{ID: from + uint64(i), DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1, Flags: flags}
		}
		rs := make([]TransferResult, n)
		fx.Reset()
		b.CreateTransfers(1e12+from, ts, rs, &fx)
		for i, r := range rs {
			if r != ResultOK {
				t.Fatalf("transfer %d: %v", ts[i].ID, r)
			}
		}
	}
	const holds = 20
	run(1, holds, TransferPending) // no timeout: kept until posted or voided
	if !b.TrimNeeded() {
		t.Fatal("20 transfers over a limit of 4, and no trim asked for")
	}
	b.Trim()
	if b.pinned != holds || b.transfers.len() != holds {
		t.Fatalf("after Trim: %d pinned, %d kept; want the %d holds", b.pinned, b.transfers.len(), holds)
	}
	for id := uint64(1); id <= holds; id++ {
		if h, ok := b.transfers.get(id); !ok || h.ID != id || h.State != StatePending || h.Amount != 1 {
			t.Fatalf("after Trim: hold %d kept as %+v, %v", id, h, ok)
		}
	}
	run(1000, holds, 0)
	if b.TrimNeeded() {
		t.Fatalf("a trim asked for after %d new transfers, with %d holds kept", holds, holds)
	}
	b.Trim() // as a quiet shard does after each round: within the room, it scans nothing
	if b.transfers.len() != 2*holds {
		t.Fatalf("a Trim within the room kept %d transfers, want all %d", b.transfers.len(), 2*holds)
	}
	run(2000, 1, 0)
	if !b.TrimNeeded() {
		t.Fatalf("no trim asked for after %d new transfers, with %d holds kept", holds+1, holds)
	}
	b.Trim()
	if b.transfers.len() != holds || b.TrimNeeded() {
		t.Fatalf("after Trim: %d kept (want %d), trim still needed %v", b.transfers.len(), holds, b.TrimNeeded())
	}
}
