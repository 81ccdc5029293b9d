package idmap

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
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
	x ^= x >> 33
	x *= inverse(0xc4ceb9fe1a85ec53)
	x ^= x >> 33
	x *= inverse(0xff51afd7ed558ccd)
	x ^= x >> 33
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

// TestRoom: a map holds Room ids without a rehash (no new table allocated), and the next new
// id rehashes it into a table twice as long; Room follows as it grows. Room mirrors intmap's
// sizing, which this pins.
func TestRoom(t *testing.T) {
	allocated := func(f func()) uint64 {
		runtime.GC() // no collection starts inside f
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	for _, capacity := range []int{1000, 1433, 1434, 5000} {
		m := New[int32](capacity)
		if m.Room() < capacity {
			t.Fatalf("New(%d): room for %d", capacity, m.Room())
		}
		id := uint64(0)
		for growth := range 3 {
			room := m.Room()
			table := uint64(room) * 10 / 7 * 2 * 12 // the next table: twice the slots, 12 bytes and more each
			if got := allocated(func() {
				for m.Len() < room {
					id++
					m.Put(id, 1)
					m.Put(id, 2) // an overwrite never grows it
				}
			}); got >= table/4 {
				t.Fatalf("New(%d), growth %d: %d bytes allocated filling its room of %d", capacity, growth, got, room)
			}
			id++
			if got := allocated(func() { m.Put(id, 1) }); got < table {
				t.Fatalf("New(%d), growth %d: the id past its room of %d allocated %d bytes, want a table of %d at least",
					capacity, growth, room, got, table)
			}
			if m.Room() < 2*room || m.Grows() != growth+1 {
				t.Fatalf("New(%d), growth %d: room %d after growing from %d, %d growths counted", capacity, growth, m.Room(), room, m.Grows())
			}
		}
	}
	// intmap's tables for small capacities: 2 slots at least, then the power of two at least
	// capacity/0.7.
	for capacity, room := range map[int]int{-1: 1, 0: 1, 1: 1, 2: 2, 7: 11, 11: 11, 12: 22} {
		if m := New[int32](capacity); m.Room() != room {
			t.Fatalf("New(%d): room for %d, want %d", capacity, m.Room(), room)
		}
	}
}

// TestZeroMixedKey: the id that Mix sends to 0 (intmap keeps key 0 outside its table) is an
// id like any other.
func TestZeroMixedKey(t *testing.T) {
	z := unmix(0)
	if Mix(z) != 0 {
		t.Fatalf("Mix(unmix(0)) = %#x", Mix(z))
	}
	m := New[int32](1)
	if m.Has(z) {
		t.Fatal("an empty map has it")
	}
	for i := range 5000 {
		m.Put(uint64(i)+1, int32(i))
	}
	m.Put(z, 7)
	m.Put(z, 8)
	for i := range 5000 { // grows past it
		m.Put(uint64(i)+1<<40, int32(i))
	}
	if v, ok := m.Get(z); !ok || v != 8 || !m.Has(z) || m.Len() != 10001 {
		t.Fatalf("Get = %d %v, Len %d", v, ok, m.Len())
	}
	// It never moves Room out of step with intmap's table: put when the map is exactly full,
	// it takes no room of the table, and the next id still fits until Room.
	f := New[int32](1000)
	for id := uint64(1); f.Len() < f.Room(); id++ {
		f.Put(id<<20, 1)
	}
	room := f.Room()
	f.Put(z, 1)
	if f.Room() != room {
		t.Fatalf("the id Mix sends to 0, put into a full map, moved its room from %d to %d", room, f.Room())
	}
}

// slotOf is intmap v0.5.2's start slot of key in a table of n slots (startIndex, phiMix64).
func slotOf(key uint64, n int) int {
	h := int64(key) * int64(0x9E3779B9)
	return int(h^(h>>16)) & (n - 1)
}

// TestNoSeedSharesSlotsForAFamily: ids base^(d<<32|d), d a multiple of 2^(13+L), differ in
// bits that a mix of one multiply between folds moved only above the bits intmap's start slot
// reads, for every seed: 256 of them shared one chain of a 2,048-slot table (found in review).
// Under Mix they spread as random ids do.
func TestNoSeedSharesSlotsForAFamily(t *testing.T) {
	defer func(s uint64) { seed = s }(seed)
	r := rand.New(rand.NewPCG(9, 9))
	const L = 11 // New(1024): 2,048 slots
	for range 20 {
		seed = r.Uint64()
		base := r.Uint64()
		slots := map[int]int{}
		for k := range uint64(1 << (32 - 13 - L)) {
			d := k << (13 + L)
			slots[slotOf(Mix(base^(d<<32|d)), 1<<L)]++
		}
		if len(slots) < 200 {
			t.Fatalf("seed %#x: 256 ids in %d start slots of 2,048 (random ids: some 240)", seed, len(slots))
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

// TestDelAndClear: random puts and deletes, the id Mix sends to 0 among them, leave the map
// holding what a Go map holds, and in step with its Room (a delete frees room; Clear keeps the
// table); Clear empties it.
func TestDelAndClear(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	z := unmix(0)
	m := New[int32](16)
	want := map[uint64]int32{}
	for step := range 50_000 {
		id := r.Uint64N(4000) + 1
		if step%101 == 0 {
			id = z
		}
		if r.IntN(3) == 0 {
			_, had := want[id]
			if m.Del(id) != had {
				t.Fatalf("step %d: Del(%d) answered %v", step, id, !had)
			}
			delete(want, id)
		} else {
			m.Put(id, int32(step))
			want[id] = int32(step)
		}
		if m.Len() != len(want) {
			t.Fatalf("step %d: Len %d, want %d", step, m.Len(), len(want))
		}
	}
	for id, v := range want {
		if got, ok := m.Get(id); !ok || got != v {
			t.Fatalf("id %d: %d %v, want %d", id, got, ok, v)
		}
	}
	m.Put(z, 1) // Clear drops it too
	room := m.Room()
	m.Clear()
	if m.Len() != 0 || m.Has(z) || m.Room() != room {
		t.Fatalf("after Clear: Len %d, has the zero id %v, Room %d (was %d)", m.Len(), m.Has(z), m.Room(), room)
	}
	grows := m.Grows()
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for id := uint64(1); m.Len() < room; id++ { // fills to Room in the table it kept
		m.Put(id, 1)
	}
	runtime.ReadMemStats(&b)
	if table := uint64(room) * 10 / 7 * 12; b.TotalAlloc-a.TotalAlloc >= table/4 || m.Room() != room || m.Grows() != grows {
		t.Fatalf("refilled to its room %d (was %d): %d bytes allocated (a table is %d), %d rehashes (was %d)",
			m.Room(), room, b.TotalAlloc-a.TotalAlloc, table, m.Grows(), grows)
	}
}
