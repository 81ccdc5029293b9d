package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ledgerDay(args ...string) (int, string, string) {
	var out, errs strings.Builder
	code := run(context.Background(), args, &out, &errs)
	return code, out.String(), errs.String()
}

// TestLedgerDay: a small day runs exact (exit 0) and leaves its store; a second run on it is
// refused (exit 2, the store untouched); --help exits 0; bad flags and a day not over exit 2.
func TestLedgerDay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "day")
	code, out, errs := ledgerDay("--data-dir", dir, "--users", "10", "--orders", "200", "--seed", "4", "--details")
	if code != 0 || !strings.Contains(out, "trial balance of ") || !strings.Contains(out, "EXACT:") ||
		!strings.Contains(out, "found 1 time(s) as") {
		t.Fatalf("a day: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "LOCK")); err != nil {
		t.Fatalf("no store left behind: %v", err)
	}
	if code, _, errs := ledgerDay("--data-dir", dir, "--orders", "10"); code != 2 || !strings.Contains(errs, "not empty") {
		t.Fatalf("a second day on the store: exit %d\n%s", code, errs)
	}
	if code, _, errs := ledgerDay("--help"); code != 0 || !strings.Contains(errs, "usage: ledger-day") {
		t.Fatalf("--help: exit %d\n%s", code, errs)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	for _, args := range [][]string{{"--users", "1"}, {"--date", "2026-02-30"}, {"--date", today}, {"--bogus"},
		{"--fail-rate", "2"}, {"--log-level", "loud"}, {"extra"}} {
		dir := filepath.Join(t.TempDir(), "day")
		if code, _, errs := ledgerDay(append([]string{"--data-dir", dir}, args...)...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d\n%s", args, code, errs)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%q: made a store: %v", args, err)
		}
	}
}
