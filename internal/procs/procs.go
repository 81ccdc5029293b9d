// Package procs sizes the Go scheduler of ledgerd and ledger-bench: how many Ps (GOMAXPROCS)
// run goroutines at once.
package procs

import (
	"fmt"
	"os"
	"runtime"
)

// ExtraDefault is how many Ps ledgerd runs beyond the cores Go gives it. Go preempts a
// goroutine only after 10 ms, and a goroutine woken by the network or a timer waits in a run
// queue while every P is busy (a memtable flush holds one for 70-140 ms); the kernel shares
// cores among more threads than cores every few ms. On 2 cores, 2 more Ps took the payments
// voucher's p99 at 20,000 orders/s from 54 to 33 ms, at a few percent of the transfer rate
// with batches of 8,190 (bench/RESULTS.md, session 16).
const ExtraDefault = 2

// ExtraMax bounds the flag.
const ExtraMax = 64

// Extra runs extra Ps beyond Go's own number, and says what it did, for the start-up log.
// It changes nothing when GOMAXPROCS is set in the environment (the operator's number), when
// extra is 0, or when Go's number is below the machine's CPUs: a CPU limit of the container
// (cgroup quota) set it, and more threads would only spend the quota sooner and be throttled.
// Setting GOMAXPROCS stops Go's own updates of it when the CPU limit changes.
func Extra(extra int) (procs int, why string) {
	n, cpus := runtime.GOMAXPROCS(0), runtime.NumCPU()
	switch {
	case extra <= 0:
		return n, "Go's own"
	case os.Getenv("GOMAXPROCS") != "":
		return n, "GOMAXPROCS set in the environment"
	case n < cpus:
		return n, fmt.Sprintf("Go's own: a CPU limit below the %d CPUs", cpus)
	}
	runtime.GOMAXPROCS(n + extra)
	return n + extra, fmt.Sprintf("%d CPUs and %d extra", n, extra)
}
