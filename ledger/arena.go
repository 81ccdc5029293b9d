package ledger

import (
	"fmt"

	"github.com/ledgercore/ledger/internal/idmap"
)

// accountChunk is how many account states one chunk of an accountArena holds.
const accountChunk = 4096

// accountArena holds a book's accounts: their states in chunks that hold no pointers, found by
// id through a map of plain integers (an idmap: at 1,000,000 accounts a Go map's look-up was
// a tenth of a shard's time). The garbage collector has nothing to mark in either
// (with a million accounts, a map of pointers to a million account objects made marking a
// large part of every collection), and a state never moves once placed, so a pointer to it
// stays valid for the book's life (accounts are never removed).
type accountArena struct {
	index  idmap.Map[uint32] // id -> position
	chunks [][]accountState
	n      uint32
}

func newAccountArena() accountArena { return accountArena{index: idmap.New[uint32](accountChunk)} }

// get returns the state of account id.
func (r *accountArena) get(id uint64) (*accountState, bool) {
	i, ok := r.index.Get(id)
	if !ok {
		return nil, false
	}
	return &r.chunks[i/accountChunk][i%accountChunk], true
}

// put places s (replacing the state of the same id, in place, if there is one) and returns
// where it is.
func (r *accountArena) put(s accountState) *accountState {
	if a, ok := r.get(s.ID); ok {
		*a = s
		return a
	}
	if r.n == ^uint32(0) {
		panic(fmt.Sprintf("ledger: INVARIANT: more than %d accounts in one book", r.n))
	}
	if r.n%accountChunk == 0 {
		r.chunks = append(r.chunks, make([]accountState, accountChunk))
	}
	i := r.n
	r.n++
	r.index.Put(s.ID, i)
	a := &r.chunks[i/accountChunk][i%accountChunk]
	*a = s
	return a
}

// each calls fn for every account, in the order they were placed.
func (r *accountArena) each(fn func(*accountState)) {
	for i := uint32(0); i < r.n; i++ {
		fn(&r.chunks[i/accountChunk][i%accountChunk])
	}
}
