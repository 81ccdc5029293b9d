package ledgerv1

import "math/big"

// U128 makes a Uint128 of lo + hi * 2^64.
func U128(lo, hi uint64) *Uint128 { return &Uint128{Lo: lo, Hi: hi} }

// Big is x as a big.Int (nil is 0).
func (x *Uint128) Big() *big.Int {
	v := new(big.Int).SetUint64(x.GetHi())
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(x.GetLo()))
}

// Uint64 is x as a uint64, and whether it fits.
func (x *Uint128) Uint64() (uint64, bool) { return x.GetLo(), x.GetHi() == 0 }
