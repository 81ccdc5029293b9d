package storage

import "fmt"

// BackgroundNiceDefault leaves Pebble's flushes and compactions at the process's priority. A
// nice value takes them off the requests' cores (the payments voucher's p99 at 20,000
// orders/s: 30 -> 23 ms on 2 cores, bench/RESULTS.md session 16), but a thread at nice 19 gets
// some 1.4% of a core beside each busy thread at 0: while anything else keeps every core busy
// (a Verify, another process), a flush that took 100 ms takes seconds, the writes stall behind
// it, the goroutines waiting for Pebble's DB lock that it holds wait with them, and each GC
// stop waits for its thread to be scheduled. Hence opt in (docs/OPERATIONS.md).
const BackgroundNiceDefault = 0

// backgroundNiceMax is the largest nice value Linux takes.
const backgroundNiceMax = 19

// CheckBackgroundNice refuses a nice value out of range, or any on a system where the store
// cannot lower its background threads' priority.
func CheckBackgroundNice(nice int) error {
	if nice < 0 || nice > backgroundNiceMax {
		return fmt.Errorf("storage: background nice must be 0 to %d, not %d (0: Pebble's background work at the process's priority)", backgroundNiceMax, nice)
	}
	if nice != 0 && !backgroundNiceSupported {
		return fmt.Errorf("storage: background nice %d: only Linux can lower one thread's priority; use 0 here", nice)
	}
	return nil
}
