package ledger

import (
	"fmt"

	"github.com/ledgercore/ledger/internal/idmap"
)

// transferCache holds the transfers a book knows, by id: their records in one slab, found
// through an idmap of their places in it. A Go map of the records themselves (some 100 bytes
// each) spread a full cache (up to twice the cache limit, TransferCacheEntriesMax, before a
// Trim, and the open holds) over some 15 MB, so every look-up of a new id (twice a transfer:
// Book.NeedsForTransfers, createTransfer) missed the processor's caches; the index of places
// is a tenth of that, and a new transfer's record is appended to the slab rather than written
// to a random place. A transfer removed (undone, or forgotten by Trim) frees its place for the
// next one; a free place's record has id 0, which no transfer has.
//
// Unlike a Go map, the index grows by rehashing every id at once (idmap): a book sized by
// SetCacheLimit holds twice its limit without growing, but open holds beyond that grow it in
// the round that passes its room, once each time they double (some 140 ms at 3,000,000
// transfers).
type transferCache struct {
	index idmap.Map[int32] // id -> place in slab
	slab  []Transfer
	free  []int32 // places whose record was removed, for reuse
}

// transferCacheInitial is the transfers a new cache holds before its index first grows.
const transferCacheInitial = 1 << 10

func newTransferCache() transferCache {
	return transferCache{index: idmap.New[int32](transferCacheInitial)}
}

// reserve makes room in the index for n transfers without a rehash (a pass over the slab,
// now rather than in a later round).
func (c *transferCache) reserve(n int) {
	if c.index.Room() >= n {
		return
	}
	m := idmap.New[int32](n)
	for i := range c.slab {
		if id := c.slab[i].ID; id != 0 {
			m.Put(id, int32(i))
		}
	}
	c.index = m
}

// len is how many transfers the cache holds.
func (c *transferCache) len() int { return c.index.Len() }

// has reports whether the cache holds transfer id.
func (c *transferCache) has(id uint64) bool { return c.index.Has(id) }

// get returns a copy of transfer id.
func (c *transferCache) get(id uint64) (Transfer, bool) {
	x, ok := c.index.Get(id)
	if !ok {
		return Transfer{}, false
	}
	return c.slab[x], true
}

// set stores t, replacing the transfer of its id if there is one.
func (c *transferCache) set(t Transfer) {
	if t.ID == 0 {
		panic("ledger: INVARIANT: a transfer of id 0 in the cache")
	}
	if x, ok := c.index.Get(t.ID); ok {
		c.slab[x] = t
		return
	}
	var x int32
	if n := len(c.free); n > 0 {
		x, c.free = c.free[n-1], c.free[:n-1]
		c.slab[x] = t
	} else {
		if len(c.slab) == transferCacheMax {
			panic(fmt.Sprintf("ledger: INVARIANT: more than %d transfers in a book's cache", transferCacheMax))
		}
		x = int32(len(c.slab))
		c.slab = append(c.slab, t)
	}
	c.index.Put(t.ID, x)
}

// transferCacheMax is the most transfers a cache can hold (its places are int32).
const transferCacheMax = 1<<31 - 1

// del removes transfer id, if the cache holds it.
func (c *transferCache) del(id uint64) {
	x, ok := c.index.Get(id)
	if !ok {
		return
	}
	c.index.Del(id)
	c.slab[x] = Transfer{}
	c.free = append(c.free, x)
}

// keep removes every transfer for which keep is false and answers how many it kept. With few
// kept, it moves them to the slab's front and indexes them again in a cleared index; with
// many, it removes the others one by one, moving nothing.
func (c *transferCache) keep(keep func(t *Transfer) bool, few bool) int {
	if !few {
		n := 0
		for i := range c.slab {
			t := &c.slab[i]
			if t.ID == 0 {
				continue
			}
			if keep(t) {
				n++
				continue
			}
			c.index.Del(t.ID)
			*t = Transfer{}
			c.free = append(c.free, int32(i))
		}
		return n
	}
	n := 0
	for i := range c.slab {
		if t := &c.slab[i]; t.ID != 0 && keep(t) {
			c.slab[n] = *t
			n++
		}
	}
	clear(c.slab[n:]) // drops their biz ids' strings
	c.slab, c.free = c.slab[:n], c.free[:0]
	c.index.Clear()
	for i := range c.slab {
		c.index.Put(c.slab[i].ID, int32(i))
	}
	return n
}
