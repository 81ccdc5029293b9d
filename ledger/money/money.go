// Package money prints amounts kept in a currency's minor units (分, cents) in that currency's
// units: 6898101 minor units of CNY are 68,981.01. The number of decimals is the currency's
// ISO 4217 minor unit, from golang.org/x/text/currency (CLDR's table of ISO 4217), not a table
// of our own.
//
// Printing is exact scaling of integers: the decimal point moves, nothing is rounded and no
// amount goes through a float, so 128-bit totals print to the last minor unit. An unknown
// currency (or none) prints the integer minor units as they are, and says so (Label).
package money

import (
	"math/big"
	"strconv"
	"strings"

	"golang.org/x/text/currency"
)

// Currency is what it takes to print amounts: a currency's ISO 4217 code and its decimals.
// The zero Currency is an unknown one: its amounts are printed in minor units.
type Currency struct {
	// Code is the ISO 4217 code, upper case; empty for an unknown currency.
	Code string
	// Scale is how many decimals the currency's minor unit has (CNY 2, JPY 0, KWD 3).
	Scale int
}

// Of is the currency of an ISO 4217 code (any case), or the unknown currency for an empty
// code, one ISO 4217 does not list, or XXX (no currency).
func Of(code string) Currency {
	if code == "" {
		return Currency{}
	}
	u, err := currency.ParseISO(code)
	if err != nil || u == currency.XXX {
		return Currency{}
	}
	scale, _ := currency.Standard.Rounding(u)
	return Currency{Code: u.String(), Scale: scale}
}

// Known reports whether amounts print in the currency's units (not in minor units).
func (c Currency) Known() bool { return c.Code != "" }

// Label names the currency in a table: its code, or "-" when unknown (the amounts are then
// minor units).
func (c Currency) Label() string {
	if c.Code == "" {
		return "-"
	}
	return c.Code
}

// Format prints an amount of minor units for people: in the currency's units with its
// decimals and a comma between thousands ("68,981.01", "-0.05", "1,200" for JPY); for an
// unknown currency, the minor units as they are ("6898101").
func (c Currency) Format(minor *big.Int) string { return c.text(minor, true) }

// Decimal prints an amount of minor units for machines (CSV): an exact decimal in the
// currency's units without separators ("68981.01", "-0.05"); for an unknown currency, the
// minor units ("6898101").
func (c Currency) Decimal(minor *big.Int) string { return c.text(minor, false) }

// FormatUint64 is Format of a uint64 amount.
func (c Currency) FormatUint64(minor uint64) string {
	return c.Format(new(big.Int).SetUint64(minor))
}

// DecimalUint64 is Decimal of a uint64 amount.
func (c Currency) DecimalUint64(minor uint64) string {
	return c.Decimal(new(big.Int).SetUint64(minor))
}

func (c Currency) text(minor *big.Int, group bool) string {
	digits := new(big.Int).Abs(minor).String()
	if !c.Known() {
		if minor.Sign() < 0 {
			return "-" + digits
		}
		return digits
	}
	if n := c.Scale + 1 - len(digits); n > 0 {
		digits = strings.Repeat("0", n) + digits
	}
	whole, frac := digits[:len(digits)-c.Scale], digits[len(digits)-c.Scale:]
	var b strings.Builder
	if minor.Sign() < 0 {
		b.WriteByte('-')
	}
	for i := range len(whole) {
		if group && i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(whole[i])
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// String is the currency as a flag or a log shows it: "CNY (2 decimals)", or "minor units".
func (c Currency) String() string {
	if !c.Known() {
		return "minor units"
	}
	return c.Code + " (" + strconv.Itoa(c.Scale) + " decimals)"
}
