// Package procs sizes the Go scheduler of a process whose store runs Pebble's flushes and
// compactions at a lowered priority (storage.Options.BackgroundNice).
package procs

import (
	"os"
	"runtime"
)

// ForBackground gives the process one P more than it has when its background work runs at
// nice > 0, and answers how many it has. A flush's goroutine is locked to a thread the kernel
// runs only on what the others leave; while that thread waits, its P waits with it, and the
// requests' goroutines would have one core's worth of Ps fewer than there are cores. A
// GOMAXPROCS set in the environment is the operator's and is kept; so is the runtime's own
// when nice is 0. (Setting it stops Go's updates of GOMAXPROCS from a changed CPU limit.)
func ForBackground(nice int) int {
	if nice > 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	return runtime.GOMAXPROCS(0)
}
