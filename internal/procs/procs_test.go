package procs

import (
	"runtime"
	"strconv"
	"testing"
)

func TestExtra(t *testing.T) {
	n := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(n)
	t.Setenv("GOMAXPROCS", "")
	if got, _ := Extra(0); got != n || runtime.GOMAXPROCS(0) != n {
		t.Errorf("extra 0: %d Ps, want the runtime's %d", got, n)
	}
	if n == runtime.NumCPU() {
		if got, _ := Extra(2); got != n+2 || runtime.GOMAXPROCS(0) != n+2 {
			t.Errorf("extra 2: %d Ps, want %d + 2", got, n)
		}
	}
	runtime.GOMAXPROCS(n)
	t.Setenv("GOMAXPROCS", strconv.Itoa(n))
	if got, why := Extra(2); got != n || runtime.GOMAXPROCS(0) != n {
		t.Errorf("extra 2 with GOMAXPROCS=%d set: %d Ps (%s), want it kept", n, got, why)
	}
	t.Setenv("GOMAXPROCS", "")
	if runtime.NumCPU() > 1 { // as under a CPU limit: Go's number below the CPUs
		runtime.GOMAXPROCS(runtime.NumCPU() - 1)
		if got, why := Extra(2); got != runtime.NumCPU()-1 {
			t.Errorf("extra 2 under a limit of %d Ps: %d Ps (%s), want it kept", runtime.NumCPU()-1, got, why)
		}
	}
}
