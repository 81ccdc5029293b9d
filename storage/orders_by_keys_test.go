package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger/payment"
)

// TestOrdersByKeysAcrossTables: OrdersByKeys agrees with a map of what was written when
// the keys live in many sstables (flushed one commit at a time, so the bloom filters and the
// seek-using-next optimisation are exercised), asked in random order, with keys that are a
// prefix or an extension of stored ones, other forms, and refunds under other originals.
func TestOrdersByKeysAcrossTables(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.OrderWriter(1)
	defer w.Close()
	want := map[OrderKey]uint64{}
	id := uint64(0)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 8 {
		var ws []OrderWrite
		for i := range 25 {
			id += 2
			o := &payment.Order{ID: id, Key: fmt.Sprintf("k%d-%d", round, i), Form: payment.Pay,
				Instruments: []payment.Instrument{{Kind: payment.Card, Amount: 1}}, State: payment.Accepted, Stage: payment.StageHold}
			if i%3 == 0 {
				o.Form, o.Original = payment.Refund, uint64(1+rng.IntN(4))
			}
			ws = append(ws, OrderWrite{Order: o, New: true})
			want[OrderKey{Form: o.Form, Original: map[bool]uint64{true: o.Original}[o.Form == payment.Refund], Key: o.Key}] = id
		}
		if err := w.Commit(ws, id); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var keys []OrderKey
	for k := range want {
		keys = append(keys, k, OrderKey{k.Form, k.Original, k.Key + "0"}, OrderKey{k.Form, k.Original, k.Key[:len(k.Key)-1]},
			OrderKey{payment.Recharge, 0, k.Key}, OrderKey{payment.Refund, k.Original + 1, k.Key})
	}
	for trial := range 20 {
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		n := 1 + rng.IntN(len(keys))
		if trial%2 == 0 {
			// sorted too: every seek goes forward (Pebble's seek-using-next)
			n = len(keys)
			slices.SortFunc(keys, func(a, b OrderKey) int {
				return bytes.Compare(orderKeyKey(nil, a.Form, a.Original, a.Key), orderKeyKey(nil, b.Form, b.Original, b.Key))
			})
		}
		ids := make([]uint64, n)
		if err := s.Live().OrdersByKeys(keys[:n], ids); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys[:n] {
			if ids[i] != want[k] {
				t.Fatalf("trial %d: %+v = %d, want %d", trial, k, ids[i], want[k])
			}
		}
	}
}
