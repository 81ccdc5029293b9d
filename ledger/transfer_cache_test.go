package ledger

import (
	"math/rand/v2"
	"testing"
)

// TestTransferCacheMatchesAMap: random sets (new and replacing), removals and keeps, both
// ways (few kept, moved; many kept, removed in place), leave the cache holding exactly what a
// Go map of the same operations holds, each record whole, and its slab no longer than the
// most transfers it held at once.
func TestTransferCacheMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := newTransferCache()
	want := map[uint64]Transfer{}
	most := 0
	check := func(step int) {
		t.Helper()
		if c.len() != len(want) {
			t.Fatalf("step %d: %d transfers, want %d", step, c.len(), len(want))
		}
		for id, w := range want {
			if got, ok := c.get(id); !ok || got != w {
				t.Fatalf("step %d: transfer %d is %+v (%v), want %+v", step, id, got, ok, w)
			}
		}
		live := 0
		for i := range c.slab {
			if c.slab[i].ID != 0 {
				live++
			}
		}
		if live != len(want) || live+len(c.free) != len(c.slab) || len(c.slab) > most {
			t.Fatalf("step %d: slab of %d holds %d with %d free; want %d, at most %d long", step,
				len(c.slab), live, len(c.free), len(want), most)
		}
	}
	for step := range 20_000 {
		id := rng.Uint64N(3000) + 1
		if step%7 == 0 {
			id = rng.Uint64() | 1 // ids anywhere, the mix's zero among them in principle
		}
		switch k := rng.IntN(100); {
		case k < 60:
			tr := Transfer{ID: id, Amount: rng.Uint64N(1000), BizID: string(rune('a' + rng.IntN(26))), State: TransferState(rng.IntN(4))}
			c.set(tr)
			want[id] = tr
		case k < 85:
			c.del(id)
			delete(want, id)
		case k == 87:
			c.reserve(c.len() + rng.IntN(5000)) // a new index, the same transfers
		case k < 87:
			few := rng.IntN(2) == 0
			keep := func(tr *Transfer) bool { return tr.Amount%3 == 0 }
			n := c.keep(keep, few)
			for id, tr := range want {
				if !keep(&tr) {
					delete(want, id)
				}
			}
			if n != len(want) {
				t.Fatalf("step %d: keep answered %d, kept %d", step, n, len(want))
			}
			for _, tr := range c.slab[len(c.slab):cap(c.slab)] { // nothing dropped is kept alive
				if tr != (Transfer{}) {
					t.Fatalf("step %d: a dropped record %+v left beyond the slab", step, tr)
				}
			}
		default:
			if _, ok := c.get(id); ok != (want[id].ID != 0) {
				t.Fatalf("step %d: get %d answered %v", step, id, ok)
			}
		}
		most = max(most, len(want))
		if step%500 == 0 {
			check(step)
		}
	}
	check(-1)
}

// TestTransferCacheRefusesIDZero: id 0 marks a free place; no transfer has it.
func TestTransferCacheRefusesIDZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a transfer of id 0 was stored")
		}
	}()
	c := newTransferCache()
	c.set(Transfer{})
}
