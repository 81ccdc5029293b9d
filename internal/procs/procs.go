// Package procs sizes the Go scheduler of ledgerd and ledger-bench: how many Ps (GOMAXPROCS)
// run goroutines at once.
package procs

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"go.uber.org/automaxprocs/maxprocs"
)

// ExtraDefault is how many Ps ledgerd runs beyond the CPUs. Go preempts a goroutine only after
// 10 ms, and a goroutine woken by the network or a timer waits in a run queue while every P is
// busy (a memtable flush holds one for 70-140 ms); the kernel shares the cores among more
// threads than cores every few ms. On 2 cores, 2 more Ps took the payments voucher's p99 at
// 20,000 orders/s from 41 to 30 ms, for about 10% more CPU an order, with the transfer rate at
// batches of 8,190 level or higher (bench/RESULTS.md, session 16).
const ExtraDefault = 2

// ExtraMax bounds the flag.
const ExtraMax = 64

// CheckExtra refuses a number of extra Ps outside 0 to ExtraMax (the --extra-procs flags).
func CheckExtra(extra int) error {
	if extra < 0 || extra > ExtraMax {
		return fmt.Errorf("must be 0 to %d, not %d", ExtraMax, extra)
	}
	return nil
}

// Extra runs extra Ps beyond the CPUs, and says what it did, for the start-up log. It changes
// nothing when extra is 0; when GOMAXPROCS is set in the environment (the operator's number);
// when Go's number is already not the CPUs' (below: a CPU limit set it; above: set before);
// or when the process's cgroup has a CPU quota, which Go rounds up (to 2 at least, so on a
// small machine Go's number stays the CPUs') and which more threads would spend sooner, to be
// throttled. Setting GOMAXPROCS stops Go's own updates of it when the CPU limit changes.
func Extra(extra int) (procs int, why string) {
	n, cpus := runtime.GOMAXPROCS(0), runtime.NumCPU()
	if extra <= 0 {
		return n, "Go's own"
	}
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		if p, err := strconv.Atoi(v); err == nil && p > 0 {
			return n, "GOMAXPROCS set in the environment"
		}
		return n, fmt.Sprintf("Go's own: GOMAXPROCS=%q in the environment is not a positive number", v)
	}
	if n != cpus {
		return n, fmt.Sprintf("Go's own: not the %d CPUs (a CPU limit, or set before)", cpus)
	}
	quota, err := cpuQuota()
	if err != nil {
		return n, fmt.Sprintf("Go's own: the CPU quota could not be read (%v)", err)
	}
	if quota > 0 {
		return n, fmt.Sprintf("Go's own: a CPU quota of %.2f CPUs", quota)
	}
	runtime.GOMAXPROCS(n + extra)
	return n + extra, fmt.Sprintf("%d CPUs and %d extra", n, extra)
}

// cpuQuota answers the CPU quota of the process's cgroup in CPUs (0: none), as automaxprocs
// reads it (cgroup v1 and v2), leaving GOMAXPROCS to Go.
func cpuQuota() (float64, error) {
	var quota float64
	_, err := maxprocs.Set(maxprocs.Logger(func(string, ...any) {}), maxprocs.RoundQuotaFunc(func(q float64) int {
		quota = q
		return runtime.GOMAXPROCS(0) // Set writes it back: unchanged
	}))
	if quota > 0 {
		runtime.SetDefaultGOMAXPROCS() // and Go follows the limit again, as before the write
	}
	return quota, err
}
