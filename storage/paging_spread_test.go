package storage

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pagingCounter counts, round by round, the index records (pages and k; only k with onlyK) a
// writer's batches hold, the most in one round, and the rounds that held any.
type pagingCounter struct {
	onlyK               bool
	total, most, rounds int
}

func (c *pagingCounter) inspect(b *pebble.Batch) {
	n := 0
	for rd := b.Reader(); ; {
		_, k, _, ok, err := rd.Next()
		if err != nil || !ok {
			break
		}
		if k[0] == prefixLatest || k[0] == prefixGenPage && !c.onlyK {
			n++
		}
	}
	c.total += n
	c.most = max(c.most, n)
	if n > 0 {
		c.rounds++
	}
}

// openTailShard opens a one-shard store whose tail seals at accounts postings, with an
// rvShard of as many accounts; opts reopen it.
func openTailShard(t *testing.T, accounts int) (*Store, *rvShard, Options) {
	t.Helper()
	opts := Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: accounts}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, newRVShard(t, s, 0, accounts), opts
}

// firstN answers the account indexes 0 to n-1, for rvShard.round.
func firstN(n int) []int {
	ix := make([]int, n)
	for i := range ix {
		ix[i] = i
	}
	return ix
}

// TestPagingAfterReopenSpread: a store reopened while a sealed generation is paged, its new
// generation far along (paging starts again from the sealed generation's first account),
// spreads the paging over the rounds that follow instead of writing most of it in the
// first (before: the first round wrote all of it).
func TestPagingAfterReopenSpread(t *testing.T) {
	const accounts = 3000
	s, r, opts := openTailShard(t, accounts)
	hot, all := firstN(100), firstN(accounts)
	grouped := func() {
		if g := s.tails[0].sealed; g != nil && g.grouping != nil {
			<-g.grouping
		}
	}
	r.round(all...) // a broad generation, sealed by the next round
	for len(s.tails[0].cur.ts) < accounts*45/100 {
		r.round(hot...)
		grouped()
	}
	if s.tails[0].sealed == nil {
		t.Fatal("the broad generation was paged before the reopen: the test needs it mid-way")
	}
	s = reopenRVShards(t, s, opts, []*rvShard{r}, nil)
	defer s.Close()
	var c pagingCounter
	r.w.inspect = c.inspect
	rounds := 0
	for ; s.tails[0].sealed != nil || rounds == 0; rounds++ {
		r.round(hot...)
		grouped()
	}
	t.Logf("after the reopen: %d records in %d rounds, the most in one %d", c.total, rounds, c.most)
	if c.most > c.total/4 {
		t.Errorf("one round wrote %d of the %d index records of the paging after the reopen", c.most, c.total)
	}
}

// TestPagingLateGroupingSpread: a sealed generation whose grouping ends late (the rounds go on
// without pages until the new generation is an eighth full) is paged over the rounds after,
// not caught up in the first.
func TestPagingLateGroupingSpread(t *testing.T) {
	const accounts = 3000
	s, r, _ := openTailShard(t, accounts)
	defer s.Close()
	gate := make(chan struct{})
	r.w.groupGate = gate
	var c pagingCounter
	r.w.inspect = c.inspect
	hot, all := firstN(100), firstN(accounts)
	r.round(all...) // sealed by the next round, its grouping held
	for len(s.tails[0].cur.ts)+len(hot) < accounts/groupWaitDivisor {
		r.round(hot...)
	}
	if c.total != 0 {
		t.Fatalf("%d index records written while the grouping was held", c.total)
	}
	close(gate) // the round that reaches an eighth waits for it
	for rounds := 0; s.tails[0].sealed != nil || rounds == 0; rounds++ {
		r.round(hot...)
	}
	t.Logf("%d records, the most in one round %d", c.total, c.most)
	if c.most > c.total/4 {
		t.Errorf("one round wrote %d of the %d index records of a paging whose grouping came late", c.most, c.total)
	}
}
