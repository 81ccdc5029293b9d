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
	txnNos      [2]uint64     // numbers of the txn of the request and, for a dup pay, of its second (see txn)
}

// txn is the channel's transaction number i of the request (0: its own; 1: a dup pay's
// second), made when it is booked: a fate holds no strings, so that the records of a long run
// cost the garbage collector little.
func (f fate) txn(i int) string { return fmt.Sprintf("FC%016X", f.txnNos[i]) }

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
	for i := range f.txnNos {
		f.txnNos[i] = r.Uint64()
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

// A StatementFault is how the channel's statement misreports one of its txns
// (Config.StatementDropRate and the rest).
type StatementFault uint8

// Statement faults.
const (
	FaultNone   StatementFault = iota
	FaultDrop                  // the txn is left out
	FaultAmount                // its line shows another amount
	FaultStatus                // its line says failed
	FaultLong                  // a line of a payment no one asked for (the line is the fault)
)

var faultNames = [...]string{FaultNone: "none", FaultDrop: "drop", FaultAmount: "amount", FaultStatus: "status", FaultLong: "long"}

func (f StatementFault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", uint8(f))
}

// statementSalt keeps the statement faults' draws apart from the requests' fates.
const statementSalt = 0x5174_7e3e_a7f0_0d11

// drawStatementFault is the fault of the statement line of txn id moving amount: its kind,
// the amount its line shows (FaultAmount: amount moved by 1 to 10% of it, at least 1, down
// when that stays above 0), and for FaultLong the txn id of the line that follows it. One
// draw against the rates decides the kind, and every draw is made whatever the kind.
func drawStatementFault(c *Config, id string, amount uint64) (kind StatementFault, shown uint64, long string) {
	h := fnv.New64a()
	h.Write([]byte(id))
	r := rand.New(rand.NewPCG(c.Seed^statementSalt, h.Sum64()))
	u := r.Float64()
	delta := 1 + r.Uint64()%max(amount/10, 1)
	long = fmt.Sprintf("FC%016X", r.Uint64())
	shown = amount
	switch {
	case u < c.StatementDropRate:
		kind = FaultDrop
	case u < c.StatementDropRate+c.StatementAmountRate:
		kind = FaultAmount
		if delta < amount {
			shown = amount - delta
		} else {
			shown = amount + delta
		}
	case u < c.StatementDropRate+c.StatementAmountRate+c.StatementStatusRate:
		kind = FaultStatus
	case u < c.StatementDropRate+c.StatementAmountRate+c.StatementStatusRate+c.StatementLongRate:
		kind = FaultLong
	}
	return kind, shown, long
}
