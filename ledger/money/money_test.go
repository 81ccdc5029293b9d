package money

import (
	"math/big"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		code  string
		want  string
		scale int
	}{
		{"CNY", "CNY", 2},
		{"cny", "CNY", 2},
		{"USD", "USD", 2},
		{"JPY", "JPY", 0},
		{"KRW", "KRW", 0},
		{"BHD", "BHD", 3},
		{"KWD", "KWD", 3},
		{"CLF", "CLF", 4},
		{"", "", 0},
		{"XXX", "", 0},
		{"ABC", "", 0},
		{"CN", "", 0},
		{"CNYY", "", 0},
	} {
		c := Of(tc.code)
		if c.Code != tc.want || c.Scale != tc.scale {
			t.Errorf("Of(%q) = %+v, want {%s %d}", tc.code, c, tc.want, tc.scale)
		}
	}
}

func TestFormat(t *testing.T) {
	max128 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1)) // 340282366920938463463374607431768211455
	neg128 := new(big.Int).Neg(max128)
	for _, tc := range []struct {
		code       string
		minor      *big.Int
		table, csv string
	}{
		{"CNY", big.NewInt(6898101), "68,981.01", "68981.01"},
		{"CNY", big.NewInt(0), "0.00", "0.00"},
		{"CNY", big.NewInt(5), "0.05", "0.05"},
		{"CNY", big.NewInt(-5), "-0.05", "-0.05"},
		{"CNY", big.NewInt(-100), "-1.00", "-1.00"},
		{"CNY", big.NewInt(6000), "60.00", "60.00"},
		{"CNY", big.NewInt(99999), "999.99", "999.99"},
		{"CNY", big.NewInt(100000), "1,000.00", "1000.00"},
		{"CNY", big.NewInt(-123456789), "-1,234,567.89", "-1234567.89"},
		{"JPY", big.NewInt(0), "0", "0"},
		{"JPY", big.NewInt(1200), "1,200", "1200"},
		{"JPY", big.NewInt(-999), "-999", "-999"},
		{"JPY", big.NewInt(-1000), "-1,000", "-1000"},
		{"BHD", big.NewInt(1), "0.001", "0.001"},
		{"KWD", big.NewInt(1234567), "1,234.567", "1234.567"},
		{"KWD", big.NewInt(-20), "-0.020", "-0.020"},
		{"", big.NewInt(6898101), "6898101", "6898101"},
		{"ABC", big.NewInt(-6898101), "-6898101", "-6898101"},
		{"", big.NewInt(0), "0", "0"},
		{"CNY", max128, "3,402,823,669,209,384,634,633,746,074,317,682,114.55", "3402823669209384634633746074317682114.55"},
		{"CNY", neg128, "-3,402,823,669,209,384,634,633,746,074,317,682,114.55", "-3402823669209384634633746074317682114.55"},
		{"JPY", max128, "340,282,366,920,938,463,463,374,607,431,768,211,455", "340282366920938463463374607431768211455"},
		{"KWD", max128, "340,282,366,920,938,463,463,374,607,431,768,211.455", "340282366920938463463374607431768211.455"},
		{"", max128, "340282366920938463463374607431768211455", "340282366920938463463374607431768211455"},
	} {
		c := Of(tc.code)
		if got := c.Format(tc.minor); got != tc.table {
			t.Errorf("%s Format(%v) = %q, want %q", tc.code, tc.minor, got, tc.table)
		}
		if got := c.Decimal(tc.minor); got != tc.csv {
			t.Errorf("%s Decimal(%v) = %q, want %q", tc.code, tc.minor, got, tc.csv)
		}
		// Exact: without its point and separators, the text is the integer again.
		back, ok := new(big.Int).SetString(strings.NewReplacer(",", "", ".", "").Replace(tc.table), 10)
		if !ok || back.Cmp(tc.minor) != 0 {
			t.Errorf("%s Format(%v) = %q reads back as %v", tc.code, tc.minor, tc.table, back)
		}
	}
}

func TestUint64(t *testing.T) {
	c := Of("CNY")
	if got := c.FormatUint64(1<<64 - 1); got != "184,467,440,737,095,516.15" {
		t.Errorf("FormatUint64(max) = %q", got)
	}
	if got := c.DecimalUint64(6000); got != "60.00" {
		t.Errorf("DecimalUint64(6000) = %q", got)
	}
}

func TestLabel(t *testing.T) {
	if got := Of("CNY").Label(); got != "CNY" {
		t.Errorf("CNY label %q", got)
	}
	if got := Of("").Label(); got != "-" {
		t.Errorf("unknown label %q", got)
	}
	if got := Of("").String(); got != "minor units" {
		t.Errorf("unknown String %q", got)
	}
}

func FuzzFormat(f *testing.F) {
	f.Add("CNY", int64(6898101))
	f.Add("JPY", int64(-1))
	f.Add("KWD", int64(0))
	f.Fuzz(func(t *testing.T, code string, v int64) {
		c := Of(code)
		text := c.Format(big.NewInt(v))
		back, ok := new(big.Int).SetString(strings.NewReplacer(",", "", ".", "").Replace(text), 10)
		if !ok || back.Int64() != v {
			t.Fatalf("%v Format(%d) = %q", c, v, text)
		}
		if d := c.Decimal(big.NewInt(v)); strings.Contains(d, ",") || strings.ReplaceAll(text, ",", "") != d {
			t.Fatalf("%v Decimal(%d) = %q, Format %q", c, v, d, text)
		}
	})
}
