package ledger

import (
	"math/big"
	"math/bits"
)

// Uint128 is an unsigned 128-bit integer: an account's running total. Amounts are 64-bit, and
// every transfer id adds an amount to at most one total of each side of an account, once, so a
// total can never pass (2^64-1)^2 < 2^128 however long the ledger runs: totals cannot overflow,
// where 64-bit ones could after 2^64 minor units of lifetime volume (a transit account's, or a
// busy internal account's, only ever grow).
type Uint128 struct{ Hi, Lo uint64 }

// U128 is v as a Uint128.
func U128(v uint64) Uint128 { return Uint128{Lo: v} }

// IsZero reports whether x is 0.
func (x Uint128) IsZero() bool { return x.Hi|x.Lo == 0 }

// Add64 returns x+v, and false if that overflows (x is then returned unchanged).
func (x Uint128) Add64(v uint64) (Uint128, bool) {
	lo, c := bits.Add64(x.Lo, v, 0)
	hi, c := bits.Add64(x.Hi, 0, c)
	if c != 0 {
		return x, false
	}
	return Uint128{Hi: hi, Lo: lo}, true
}

// Add returns x+y, and false if that overflows.
func (x Uint128) Add(y Uint128) (Uint128, bool) {
	lo, c := bits.Add64(x.Lo, y.Lo, 0)
	hi, c := bits.Add64(x.Hi, y.Hi, c)
	if c != 0 {
		return x, false
	}
	return Uint128{Hi: hi, Lo: lo}, true
}

// Sub64 returns x-v, and false if v is greater than x (x is then returned unchanged).
func (x Uint128) Sub64(v uint64) (Uint128, bool) {
	lo, b := bits.Sub64(x.Lo, v, 0)
	hi, b := bits.Sub64(x.Hi, 0, b)
	if b != 0 {
		return x, false
	}
	return Uint128{Hi: hi, Lo: lo}, true
}

// Sub returns x-y, and false if y is greater than x (x is then returned unchanged).
func (x Uint128) Sub(y Uint128) (Uint128, bool) {
	lo, b := bits.Sub64(x.Lo, y.Lo, 0)
	hi, b := bits.Sub64(x.Hi, y.Hi, b)
	if b != 0 {
		return x, false
	}
	return Uint128{Hi: hi, Lo: lo}, true
}

// Cmp is -1, 0 or +1 as x is less than, equal to or greater than y.
func (x Uint128) Cmp(y Uint128) int {
	switch {
	case x.Hi < y.Hi, x.Hi == y.Hi && x.Lo < y.Lo:
		return -1
	case x == y:
		return 0
	}
	return 1
}

// WrapAdd and WrapSub add and subtract modulo 2^128: exact for sums whose true value fits, and
// for checks that a sum of signed movements is zero (Audit).
func (x Uint128) WrapAdd(y Uint128) Uint128 {
	lo, c := bits.Add64(x.Lo, y.Lo, 0)
	hi, _ := bits.Add64(x.Hi, y.Hi, c)
	return Uint128{Hi: hi, Lo: lo}
}

// WrapSub is x-y modulo 2^128.
func (x Uint128) WrapSub(y Uint128) Uint128 {
	lo, b := bits.Sub64(x.Lo, y.Lo, 0)
	hi, _ := bits.Sub64(x.Hi, y.Hi, b)
	return Uint128{Hi: hi, Lo: lo}
}

// Big is x as a big.Int.
func (x Uint128) Big() *big.Int {
	v := new(big.Int).SetUint64(x.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(x.Lo))
}

// Signed is x read as a two's-complement 128-bit number (a net balance that may be negative).
func (x Uint128) Signed() *big.Int {
	v := x.Big()
	if x.Hi>>63 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	return v
}

// String is x in decimal.
func (x Uint128) String() string {
	if x.Hi == 0 {
		return uitoa(x.Lo)
	}
	return x.Big().String()
}

func uitoa(v uint64) string {
	var buf [20]byte
	i := len(buf)
	for v >= 10 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	buf[i] = byte('0' + v)
	return string(buf[i:])
}
