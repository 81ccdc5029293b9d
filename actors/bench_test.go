package actors

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// BenchmarkCreateTransfers measures durable transfers per second through the shard actors
// and Pebble on the real disk (no gRPC), uniform over 10,000 accounts.
func BenchmarkCreateTransfers(b *testing.B) {
	for _, shards := range []uint32{1, 2, 4} {
		for _, batch := range []int{100, 8190} {
			b.Run(fmt.Sprintf("shards=%d/batch=%d", shards, batch), func(b *testing.B) {
				benchTransfers(b, shards, batch, noHot)
			})
		}
	}
}

// BenchmarkHotInflows: 90% of the transfers credit one account, over 2 shards, with that
// account flagged hot (its inflows from the other shard buffered) and not. Compare the two
// with benchstat.
func BenchmarkHotInflows(b *testing.B) {
	for _, hot := range []hotMode{hotFlagged, hotPlain} {
		b.Run(fmt.Sprintf("hot=%s", hot), func(b *testing.B) { benchTransfers(b, 2, 8190, hot) })
	}
}

type hotMode string

const (
	noHot      hotMode = ""
	hotFlagged hotMode = "flagged"
	hotPlain   hotMode = "plain"
)

func benchTransfers(b *testing.B, shards uint32, batch int, hot hotMode) {
	store, err := storage.Open(b.TempDir(), storage.Options{Shards: shards})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	l, err := Start(store, Config{Shards: shards, Fatal: func(err error) { b.Errorf("fatal: %v", err) }})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Stop()
	const accounts = 10_000
	as := make([]ledger.Account, 0, ledger.BatchEventsMax)
	for id := uint64(1); id <= accounts; id++ {
		a := ledger.Account{ID: id, Ledger: 1, Code: 1}
		if id == accounts && hot == hotFlagged {
			a.Flags = ledger.AccountHot | ledger.AccountInternal
		}
		as = append(as, a)
		if len(as) == cap(as) || id == accounts {
			if _, err := l.CreateAccounts(as); err != nil {
				b.Fatal(err)
			}
			as = as[:0]
		}
	}
	var ids, workers atomic.Uint64
	next := func(rng *rand.Rand) []ledger.Transfer {
		ts := make([]ledger.Transfer, batch)
		first := ids.Add(uint64(batch)) - uint64(batch)
		for i := range ts {
			id := first + uint64(i) + 1
			d := rng.Uint64N(accounts) + 1
			c := (d+rng.Uint64N(accounts-1))%accounts + 1
			if hot != noHot {
				d = rng.Uint64N(accounts-1) + 1 // the hot account (the last) only takes
				if rng.IntN(10) < 9 {
					c = accounts
				} else {
					c = (d+rng.Uint64N(accounts-2))%(accounts-1) + 1
				}
			}
			ts[i] = ledger.Transfer{ID: id, DebitAccountID: d, CreditAccountID: c, Amount: 1, Ledger: 1, Code: 1}
		}
		return ts
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(workers.Add(1), 2))
		for pb.Next() {
			ts := next(rng) // generating a batch costs about 1% of running it
			rs, err := l.CreateTransfers(ts)
			if err != nil {
				b.Error(err)
				return
			}
			for _, r := range rs {
				if r != ledger.ResultOK {
					b.Errorf("result %v", r)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "transfers/s")
}
