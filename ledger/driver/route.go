package driver

import (
	"fmt"
	"sync/atomic"

	"github.com/ledgercore/ledger/ledger"
)

// The host's side of a request: which shard runs each event, what each shard admits, and how
// each shard's book is recovered from storage. Hosts (the actors, the simulator) share it.

// AccountShard is the shard that opens an account; ids no shard may own go to shard 0, which
// refuses them by validation.
func AccountShard(id uint64, shards uint32) uint32 {
	if id >= ledger.TransitIDMin {
		return 0
	}
	return ledger.ShardOf(id, shards)
}

// TransferShard is the shard that runs a transfer: its debit account's; ids the shards cannot
// own go to shard 0, which refuses them with the right result.
func TransferShard(debit uint64, shards uint32) uint32 { return AccountShard(debit, shards) }

// RouteTransfers calls add(shard, i) for each transfer of a request that a shard runs. A
// linked chain whose debit accounts live on several shards runs nowhere: its first member on
// another shard answers linked_chain_spans_shards and the rest linked_event_failed, in results.
func RouteTransfers(ts []ledger.Transfer, shards uint32, results []ledger.TransferResult, add func(shard uint32, i int)) {
	for i := 0; i < len(ts); {
		end := i
		for end < len(ts)-1 && ts[end].Flags&ledger.TransferLinked != 0 {
			end++
		}
		s := TransferShard(ts[i].DebitAccountID, shards)
		if !chainSpans(ts[i:end+1], s, shards, results[i:end+1]) {
			for k := i; k <= end; k++ {
				add(s, k)
			}
		}
		i = end + 1
	}
}

func chainSpans(chain []ledger.Transfer, s, shards uint32, results []ledger.TransferResult) bool {
	spans := false
	for k := range chain {
		if TransferShard(chain[k].DebitAccountID, shards) != s {
			spans = true
		}
	}
	if !spans {
		return false
	}
	first := true
	for k := range chain {
		results[k] = ledger.ResultLinkedEventFailed
		if first && TransferShard(chain[k].DebitAccountID, shards) != s {
			results[k] = ledger.ResultLinkedChainSpansShards
			first = false
		}
	}
	return true
}

// Admission is what one shard admitted and has not answered yet: a shard counts a request
// from its admission until its answer, so that a stall (a slow disk, a slow credit shard)
// refuses new requests instead of queueing them without bound.
type Admission struct{ requests, events atomic.Int64 }

// Requests and Events are the requests and events admitted and not answered yet.
func (a *Admission) Requests() int64 { return a.requests.Load() }
func (a *Admission) Events() int64   { return a.events.Load() }

// Done gives back one answered request of n events.
func (a *Admission) Done(n int) {
	a.requests.Add(-1)
	a.events.Add(-int64(n))
}

// Admit reserves room in each shard a request needs, all or none: one request, and its events
// (events[shard]) on that shard, until the shard answers (Admission.Done). The counts never
// pass their limits, not even for a moment.
func Admit(adm []Admission, events []int, requestsMax, eventsMax int64) bool {
	for i, n := range events {
		if n == 0 {
			continue
		}
		a := &adm[i]
		if !reserve(&a.requests, 1, requestsMax) {
			unadmit(adm, events[:i])
			return false
		}
		if !reserve(&a.events, int64(n), eventsMax) {
			a.requests.Add(-1)
			unadmit(adm, events[:i])
			return false
		}
	}
	return true
}

// reserve adds n to c unless that would pass max.
func reserve(c *atomic.Int64, n, max int64) bool {
	for {
		cur := c.Load()
		if cur+n > max {
			return false
		}
		if c.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// unadmit gives back what Admit reserved on the shards before a refusal.
func unadmit(adm []Admission, events []int) {
	for i, n := range events {
		if n > 0 {
			adm[i].Done(n)
		}
	}
}

// RecoveryStore is what Recover reads (storage.Reader satisfies it).
type RecoveryStore interface {
	ForEachAccount(fn func(ledger.Account) error) error
	ForEachOutboxLeg(fn func(ledger.Leg) error) error
	Transfer(id uint64) (ledger.Transfer, bool, error)
	ForEachPending(shard uint32, fn func(ledger.Transfer) error) error
	Clock(shard uint32) (uint64, error)
	ShardDay(shard uint32) (ledger.Day, bool, error)
}

// Recover rebuilds each shard's book from storage: accounts, pending transfers (with their
// expiries re-armed), the outbox and the transfers its legs belong to, and the clock.
func Recover(v RecoveryStore, shards uint32) ([]*ledger.Book, error) {
	books := make([]*ledger.Book, shards)
	for i := range books {
		books[i] = ledger.NewBook(uint32(i), shards)
	}
	err := v.ForEachAccount(func(a ledger.Account) error {
		books[ledger.ShardOf(a.ID, shards)].LoadAccount(a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = v.ForEachOutboxLeg(func(l ledger.Leg) error {
		if l.From >= shards {
			return fmt.Errorf("driver: outbox leg %+v of shard %d of %d", l.LegKey, l.From, shards)
		}
		books[l.From].LoadOutbox(l)
		t, found, err := v.Transfer(l.TransferID)
		if err != nil {
			return err
		}
		if found && (l.Kind == ledger.LegCreditPost || l.Kind == ledger.LegCreditHold) {
			books[l.From].LoadTransfer(t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, b := range books {
		shard := uint32(i)
		if err := v.ForEachPending(shard, func(t ledger.Transfer) error { b.LoadTransfer(t); return nil }); err != nil {
			return nil, err
		}
		clock, err := v.Clock(shard)
		if err != nil {
			return nil, err
		}
		b.LoadClock(clock)
		day, _, err := v.ShardDay(shard)
		if err != nil {
			return nil, err
		}
		b.LoadDay(day) // 0 in a store whose days were never started (storage.Store.InitDays)
	}
	return books, nil
}
