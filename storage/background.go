package storage

import "fmt"

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
