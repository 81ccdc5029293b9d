package fake

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// fate is everything random about one request, drawn when it arrives from a generator
// seeded with (Config.Seed, FNV-1a of its order_no): the same seed and order_no give the
// same fate whatever else arrives and in which order. The draws are made in a fixed order
// and all of them every time, whether they apply or not, so a rate of 0 does not shift the
// draws that follow it.
type fate struct {
	fail        bool
	timeout     bool // the answer to its first arrival is lost
	drop        bool // timeout: drop the connection rather than hold the answer
	dupCallback bool
	dupPay      bool
	mismatch    bool
	latency     time.Duration // Latency plus its jitter
	delta       uint64        // mismatch: by how much the amount differs, before scaling
	down        bool          // mismatch: less than asked (when the amount allows)
	txns        [2]string     // the txn of the request and, for a dup pay, of the second payment
}

func drawFate(c *Config, orderNo string) fate {
	h := fnv.New64a()
	h.Write([]byte(orderNo))
	r := rand.New(rand.NewPCG(c.Seed, h.Sum64()))
	var f fate
	f.fail = r.Float64() < c.FailRate
	f.timeout = r.Float64() < c.TimeoutRate
	f.drop = r.IntN(2) == 0
	f.dupCallback = r.Float64() < c.DupCallbackRate
	f.dupPay = r.Float64() < c.DupPayRate
	f.mismatch = r.Float64() < c.MismatchRate
	jitter := r.Uint64()
	if c.Jitter > 0 {
		jitter %= uint64(c.Jitter) + 1
	} else {
		jitter = 0
	}
	f.latency = c.Latency + time.Duration(jitter)
	f.delta = r.Uint64()
	f.down = r.IntN(2) == 0
	for i := range f.txns {
		f.txns[i] = fmt.Sprintf("FC%016X", r.Uint64())
	}
	return f
}

// paidAmount is what a Pay of amount moves under f: amount, or with mismatch, amount moved
// by 1 to 10% of it (at least 1), down when f.down and the result stays above 0 (or up
// would overflow).
func (f fate) paidAmount(amount uint64) uint64 {
	if !f.mismatch {
		return amount
	}
	d := 1 + f.delta%max(amount/10, 1)
	if (f.down && d < amount) || amount+d < amount {
		return amount - d
	}
	return amount + d
}
