package idmap

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMapMatchesGoMap: puts, overwrites and look-ups over random, zero, extreme and
// structured ids answer as a Go map does.
func TestMapMatchesGoMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ids := []uint64{0, 1, math.MaxUint64, 1 << 63}
	for k := range uint64(2000) {
		ids = append(ids, k<<40, k<<56|k, 1<<63+k, r.Uint64())
	}
	m, want := New[int32](4), map[uint64]int32{}
	for i := range 50_000 {
		id := ids[r.IntN(len(ids))]
		if r.IntN(3) == 0 {
			v := int32(i)
			m.Put(id, v)
			want[id] = v
		}
		q := ids[r.IntN(len(ids))]
		got, ok := m.Get(q)
		w, wok := want[q]
		if got != w || ok != wok || m.Has(q) != wok {
			t.Fatalf("id %#x: got %d %v, want %d %v", q, got, ok, w, wok)
		}
	}
	if m.Len() != len(want) {
		t.Fatalf("%d ids, want %d", m.Len(), len(want))
	}
}

// unmix inverts Mix: every step of it is invertible, so distinct ids never collide.
func unmix(x uint64) uint64 {
	x ^= x>>29 ^ x>>58
	x *= inverse(0x9e3779b97f4a7c15)
	x ^= x >> 32
	return x ^ seed
}

// inverse is a's inverse modulo 2^64 (a odd), by Newton's iteration.
func inverse(a uint64) uint64 {
	x := a
	for range 6 {
		x *= 2 - a*x
	}
	return x
}

func TestMixIsABijection(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, id := range []uint64{0, 1, math.MaxUint64, 1 << 63} {
		if got := unmix(Mix(id)); got != id {
			t.Fatalf("unmix(Mix(%#x)) = %#x", id, got)
		}
	}
	for range 100_000 {
		if id := r.Uint64(); unmix(Mix(id)) != id {
			t.Fatalf("unmix(Mix(%#x)) = %#x", id, unmix(Mix(id)))
		}
	}
}

// TestMixSpreadsStructuredIDs: ids a client might choose, which differ in a few bits anywhere,
// fill the low bits a table's slot is taken from as random ids do (2^16 ids in 2^20 slots
// reach some 63,500 distinct slots). Without the mix, the first family would share one slot.
func TestMixSpreadsStructuredIDs(t *testing.T) {
	families := map[string]func(k uint64) uint64{
		"k<<40":      func(k uint64) uint64 { return k << 40 },
		"k<<48|7":    func(k uint64) uint64 { return k<<48 | 7 },
		"2^63+k":     func(k uint64) uint64 { return 1<<63 + k },
		"sequential": func(k uint64) uint64 { return k + 1 },
		"k*2^20":     func(k uint64) uint64 { return k * (1 << 20) },
	}
	for name, id := range families {
		slots := map[uint64]bool{}
		for k := range uint64(1 << 16) {
			slots[Mix(id(k))&(1<<20-1)] = true
		}
		if len(slots) < 62_000 {
			t.Errorf("%s: 65,536 ids in %d of 1,048,576 slots, want about 63,500", name, len(slots))
		}
	}
}

// BenchmarkGet: look-ups of random ids among 10,000 (in the CPU's cache) and 1,000,000 (most
// missing it), as the book's and the tail's at rows 1 and 5 of the TigerBeetle table.
func BenchmarkGet(b *testing.B) {
	for _, n := range []uint64{10_000, 1 << 20} {
		r := rand.New(rand.NewPCG(5, n))
		probes := make([]uint64, 1<<22)
		for i := range probes {
			probes[i] = r.Uint64N(n) + 1
		}
		var sink uint32
		b.Run(fmt.Sprintf("go-map/%d", n), func(b *testing.B) {
			m := make(map[uint64]uint32, n)
			for i := range n {
				m[i+1] = uint32(i)
			}
			b.ResetTimer()
			for i := range b.N {
				sink += m[probes[i&(len(probes)-1)]]
			}
		})
		b.Run(fmt.Sprintf("idmap/%d", n), func(b *testing.B) {
			m := New[uint32](int(n))
			for i := range n {
				m.Put(i+1, uint32(i))
			}
			b.ResetTimer()
			for i := range b.N {
				v, _ := m.Get(probes[i&(len(probes)-1)])
				sink += v
			}
		})
		_ = sink
	}
}
