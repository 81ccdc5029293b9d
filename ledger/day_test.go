package ledger_test

import (
	"testing"
	"time"

	"github.com/ledgercore/ledger/ledger"
)

func TestDayArithmeticMatchesTheCalendar(t *testing.T) {
	start := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	d := ledger.DayMin
	for i := 0; i < 366*130; i++ {
		tm := start.AddDate(0, 0, i)
		want := ledger.Day(tm.Year()*10000 + int(tm.Month())*100 + tm.Day())
		if d != want || !d.Valid() || ledger.DayOfUnix(tm.Unix()+3600*23) != want || d.String() != tm.Format("2006-01-02") {
			t.Fatalf("day %d: %v (%v), want %v", i, d, ledger.DayOfUnix(tm.Unix()), want)
		}
		if i > 0 && d.Prev().Next() != d {
			t.Fatalf("%v: prev %v", d, d.Prev())
		}
		if p, err := ledger.ParseDay(tm.Format("2006-01-02")); err != nil || p != d {
			t.Fatalf("parse %v: %v %v", d, p, err)
		}
		d = d.Next()
	}
	for _, bad := range []string{"2026-02-29", "2026-13-01", "2026-1-01", "1969-12-31", "x", "", "2026-11-26x", "20261131"} {
		if _, err := ledger.ParseDay(bad); err == nil {
			t.Errorf("ParseDay(%q) took it", bad)
		}
	}
	if d, err := ledger.ParseDay("20240229"); err != nil || d != 20240229 {
		t.Errorf("20240229: %v %v", d, err)
	}
	if ledger.Day(20261131).Valid() || ledger.Day(0).Valid() {
		t.Error("invalid days pass Valid")
	}
}
