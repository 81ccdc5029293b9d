package ledger

import "fmt"

// Day is an accounting day (会计日) as the number yyyymmdd (20261126 is 26 November 2026).
// It is a logical value of the ledger, not a reading of a clock: each shard has a current
// day, stored with its rounds, and every posting records the day it was written in (its
// transfer's day: see Book.SwitchDay). 0 is no day: a posting written before accounting days
// existed (store format 5 and older).
type Day uint32

// DayMin and DayMax bound the days a ledger accepts.
const (
	DayMin Day = 19700101
	DayMax Day = 99991231
)

// MakeDay is the day of a calendar date; ok is false when the date does not exist or lies
// outside [DayMin, DayMax].
func MakeDay(year, month, day int) (Day, bool) {
	if year < 1970 || year > 9999 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	return Day(year*10000 + month*100 + day), true
}

// ParseDay reads a day written as YYYY-MM-DD or YYYYMMDD.
func ParseDay(s string) (Day, error) {
	var y, m, d int
	var n int
	var err error
	switch len(s) {
	case 10:
		n, err = fmt.Sscanf(s, "%4d-%2d-%2d", &y, &m, &d)
	case 8:
		n, err = fmt.Sscanf(s, "%4d%2d%2d", &y, &m, &d)
	}
	if n != 3 || err != nil {
		return 0, fmt.Errorf("ledger: day %q: want YYYY-MM-DD", s)
	}
	day, ok := MakeDay(y, m, d)
	if !ok || (len(s) == 10 && day.String() != s) {
		return 0, fmt.Errorf("ledger: day %q: no such date (from %v to %v)", s, DayMin, DayMax)
	}
	return day, nil
}

// Valid reports whether d is a calendar date in [DayMin, DayMax].
func (d Day) Valid() bool {
	_, ok := MakeDay(d.parts())
	return ok && d >= DayMin
}

func (d Day) parts() (int, int, int) { return int(d / 10000), int(d / 100 % 100), int(d % 100) }

// String writes the day as YYYY-MM-DD ("none" for 0).
func (d Day) String() string {
	if d == 0 {
		return "none"
	}
	y, m, dd := d.parts()
	return fmt.Sprintf("%04d-%02d-%02d", y, m, dd)
}

// Next is the calendar day after d (d must be valid and before DayMax).
func (d Day) Next() Day {
	y, m, dd := d.parts()
	switch {
	case dd < daysIn(y, m):
		dd++
	case m < 12:
		m, dd = m+1, 1
	default:
		y, m, dd = y+1, 1, 1
	}
	return Day(y*10000 + m*100 + dd)
}

// Prev is the calendar day before d (d must be valid and after DayMin).
func (d Day) Prev() Day {
	y, m, dd := d.parts()
	switch {
	case dd > 1:
		dd--
	case m > 1:
		m--
		dd = daysIn(y, m)
	default:
		y, m, dd = y-1, 12, 31
	}
	return Day(y*10000 + m*100 + dd)
}

// DayOfUnix is the UTC calendar day of a Unix time in seconds (a pure computation: the
// caller reads the clock).
func DayOfUnix(sec int64) Day {
	days := sec / 86400
	if sec < 0 && sec%86400 != 0 {
		days--
	}
	// Howard Hinnant's civil_from_days.
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return Day(y*10000 + m*100 + d)
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
