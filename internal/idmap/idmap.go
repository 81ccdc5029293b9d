// Package idmap is a hash map from 64-bit ids (accounts') to small values, for the ledger's
// hot paths at many accounts: a look-up that misses the CPU cache is one probe into one flat
// array, where a Go map's is two (BenchmarkGet: 39 against 57 ns among 1,000,000 ids; among
// 10,000, in cache, 11 against 9 ns).
//
// It is github.com/kamstrup/intmap (open addressing, linear probing) under a seeded mix of
// the ids. intmap's own hash only multiplies and reads the product's low bits, so ids that
// differ only in their high bits (k<<40 for k = 1, 2, 3 ...) would share a chain and make each
// look-up a scan. Mixed first (murmur3's finalizer of the id xor a seed drawn at start), every
// bit of an id moves the bits a slot is taken from, and which ids share a slot depends on the
// seed. Nothing reads a Map in its table's order, so the seed changes no result.
//
// A Map is not safe for concurrent use with a Put. It grows when it holds more than Room ids,
// by rehashing every one at once (at 1,000,000 ids, some tens of milliseconds), where a Go
// map grows a little at a time: a caller on a hot path sizes it with New, or builds a larger
// one (New, Put) where a pause costs nothing and swaps it in.
package idmap

import (
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/kamstrup/intmap"
)

// seed is drawn once a process.
var seed = rand.Uint64()

// Mix is a bijection of the ids (murmur3's 64-bit finalizer of id xor the process's seed):
// distinct ids stay distinct, and every bit of an id moves every bit of the result.
func Mix(id uint64) uint64 {
	x := id ^ seed
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// Map maps ids to values of V.
type Map[V any] struct {
	m     *intmap.Map[uint64, V]
	slots int // the length of intmap's table, followed as it grows (Room)
	grows int // how many Puts rehashed it (Grows)
	// The id Mix sends to 0, kept here: intmap keeps key 0 outside its table and counts it
	// in the size its rehash compares, which Room would then have to follow.
	zero    V
	hasZero bool
}

// fill is intmap's fill factor: its table of n slots holds n*7/10 keys before it grows.
const fill = 0.7

// CapacityMax is the most ids New sizes a map for (a larger capacity is taken as this):
// intmap's sizing wraps past some 1.5 billion.
const CapacityMax = 1 << 30

// New returns a map that holds capacity ids before it grows (at least: Room). A Map is used
// in place, never copied: a copy's Puts would leave the original's Room behind.
func New[V any](capacity int) Map[V] {
	capacity = min(max(capacity, 1), CapacityMax)
	// intmap v0.5.2's table length for capacity (arraySize): TestRoom checks that it holds.
	slots := max(2, 1<<bits.Len64(uint64(math.Ceil(float64(capacity)/fill))-1))
	return Map[V]{m: intmap.New[uint64, V](capacity), slots: slots}
}

// Room is how many ids the map holds before a Put of a new one rehashes it.
func (m *Map[V]) Room() int { return m.slots * 7 / 10 }

// Get returns id's value and whether it is there.
func (m *Map[V]) Get(id uint64) (V, bool) {
	if k := Mix(id); k != 0 {
		return m.m.Get(k)
	}
	return m.zero, m.hasZero
}

// Has reports whether id is there.
func (m *Map[V]) Has(id uint64) bool {
	if k := Mix(id); k != 0 {
		return m.m.Has(k)
	}
	return m.hasZero
}

// Put sets id's value.
func (m *Map[V]) Put(id uint64, v V) {
	k := Mix(id)
	if k == 0 {
		m.zero, m.hasZero = v, true
		return
	}
	n := m.m.Len()
	m.m.Put(k, v)
	if n == m.Room() && m.m.Len() > n {
		m.slots *= 2 // intmap rehashed into a table twice as long
		m.grows++
	}
}

// Del removes id; it reports whether id was there. It leaves no tombstone: intmap shifts the
// ids after it in its chain back.
func (m *Map[V]) Del(id uint64) bool {
	k := Mix(id)
	if k == 0 {
		was := m.hasZero
		var zero V
		m.zero, m.hasZero = zero, false
		return was
	}
	return m.m.Del(k)
}

// Clear removes every id, keeping the table (and Room).
func (m *Map[V]) Clear() {
	m.m.Clear()
	var zero V
	m.zero, m.hasZero = zero, false
}

// Grows is how many Puts rehashed the map, each a pause of a pass over every id it held: a
// caller that sizes its map ahead (Room) checks that it never grew.
func (m *Map[V]) Grows() int { return m.grows }

// Len is how many ids the map holds.
func (m *Map[V]) Len() int {
	if m.hasZero {
		return m.m.Len() + 1
	}
	return m.m.Len()
}
