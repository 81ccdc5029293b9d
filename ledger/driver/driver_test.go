package driver

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// cluster is a test bench of drivers over one store, in which the test delivers every
// message by hand, in any order, as often as it likes, and commits rounds when it chooses.
type cluster struct {
	t       *testing.T
	store   *storage.Store
	drivers []*Driver
	hosts   []*testHost
	now     uint64
}

type envelope struct {
	to uint32
	m  Message
}

// testHost records what its driver decides.
type testHost struct {
	c        *cluster
	shard    uint32
	w        *storage.Writer
	sent     []envelope
	rounds   []*Round
	woken    int
	accounts []*AccountsPart
	replies  []*TransfersPart
	book     *ledger.Book
	sealed   []int // the postings of each round sealed, in order
	// early: Durable writes a round asked about at once; earlyCommits counts them.
	early        bool
	earlyCommits int
}

func (h *testHost) Send(to uint32, m Message) { h.sent = append(h.sent, envelope{to, m}) }
func (h *testHost) Commit(r *Round) {
	h.rounds = append(h.rounds, r)
	h.sealed = append(h.sealed, len(r.Effects.Postings))
}
func (h *testHost) Wake()                           { h.woken++ }
func (h *testHost) ArmHotFlush(time.Duration)       {}
func (h *testHost) ReplyAccounts(p *AccountsPart)   { h.accounts = append(h.accounts, p) }
func (h *testHost) ReplyTransfers(p *TransfersPart) { h.replies = append(h.replies, p) }

// Durable: with early set, a round asked about is written then and there, as if its commit
// had just returned (run then finds it durable).
func (h *testHost) Durable(r *Round) bool {
	if r.Closed() || !h.early {
		return r.Closed()
	}
	r.Err = h.w.Commit(r.Effects, r.Clock)
	close(r.Durable)
	h.earlyCommits++
	return true
}

func newCluster(t *testing.T, shards uint32) *cluster { return newClusterWith(t, shards, nil) }

// newClusterWith is newCluster with set changing each driver's configuration (nil: none).
func newClusterWith(t *testing.T, shards uint32, set func(*Config)) *cluster {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: shards, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	c := &cluster{t: t, store: store, now: 1e12}
	for i := uint32(0); i < shards; i++ {
		h := &testHost{c: c, shard: i, w: store.Writer(i)}
		cfg := Config{Shard: i, Shards: shards, Now: func() uint64 { return c.now }, RedeliverAfterTicks: 2,
			HotFlushInterval: time.Millisecond, HotBufferLegsMax: 100}
		if set != nil {
			set(&cfg)
		}
		h.book = ledger.NewBook(i, shards)
		d := New(cfg, h, store.Live(), h.book)
		c.hosts, c.drivers = append(c.hosts, h), append(c.drivers, d)
	}
	return c
}

// run wakes shard i and commits every round it seals until it is quiet.
func (c *cluster) run(i uint32) {
	d, h := c.drivers[i], c.hosts[i]
	for {
		for h.woken > 0 {
			h.woken--
			d.Wake()
		}
		if !c.commitOne(i) {
			return
		}
	}
}

// commitOne commits shard i's oldest round sealed, if there is one.
func (c *cluster) commitOne(i uint32) bool {
	d, h := c.drivers[i], c.hosts[i]
	if len(h.rounds) == 0 {
		return false
	}
	r := h.rounds[0]
	h.rounds = h.rounds[1:]
	if !r.Closed() { // else written early (testHost.Durable)
		r.Err = h.w.Commit(r.Effects, r.Clock)
		close(r.Durable)
	}
	if err := d.Committed(r); err != nil {
		c.t.Fatal(err)
	}
	return true
}

// take removes and returns the messages shard i sent, in order.
func (c *cluster) take(i uint32) []envelope {
	out := c.hosts[i].sent
	c.hosts[i].sent = nil
	return out
}

// deliver hands messages to their shards and runs them.
func (c *cluster) deliver(es ...envelope) {
	for _, e := range es {
		c.drivers[e.to].Receive(e.m)
		c.run(e.to)
	}
}

func (c *cluster) openAccounts(as ...ledger.Account) {
	for _, a := range as {
		s := ledger.ShardOf(a.ID, uint32(len(c.drivers)))
		c.drivers[s].Accounts(&AccountsPart{Events: []ledger.Account{a}, Results: make([]ledger.AccountResult, 1)})
		c.run(s)
	}
}

func transfer(id, debit, credit, amount uint64) *TransfersPart {
	return &TransfersPart{Events: []ledger.Transfer{{ID: id, DebitAccountID: debit, CreditAccountID: credit,
		Amount: amount, Ledger: 1, Code: 1}}, Results: make([]ledger.TransferResult, 1)}
}

func accountOn(start uint64, shard, shards uint32) uint64 {
	for id := start; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

func idArbitratedBy(start uint64, shard, shards uint32) uint64 {
	for id := start; ; id++ {
		if ledger.IDShard(id, shards) == shard {
			return id
		}
	}
}

func only[M Message](t *testing.T, es []envelope) M {
	t.Helper()
	var found []M
	for _, e := range es {
		if m, ok := e.m.(M); ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %T among %d messages, found %d", *new(M), len(es), len(found))
	}
	return found[0]
}

func (c *cluster) balance(id uint64) ledger.Balance {
	a, found, err := c.store.Live().Account(id)
	if err != nil || !found {
		c.t.Fatalf("account %d: %v %v", id, found, err)
	}
	return a.Balance
}
