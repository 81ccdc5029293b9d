package procs

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// unsetGOMAXPROCS removes GOMAXPROCS from the environment for the test (t.Setenv cannot
// unset, and an empty one counts as set but not a number).
func unsetGOMAXPROCS(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // restores the value after the test
	if err := os.Unsetenv("GOMAXPROCS"); err != nil {
		t.Fatal(err)
	}
}

func TestExtra(t *testing.T) {
	n := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(n)
	unsetGOMAXPROCS(t)
	if got, _ := Extra(0); got != n || runtime.GOMAXPROCS(0) != n {
		t.Errorf("extra 0: %d Ps, want the runtime's %d", got, n)
	}
	t.Setenv("GOMAXPROCS", "foo") // the runtime ignores it: so does Extra, adding nothing
	if got, why := Extra(2); got != n {
		t.Errorf("extra 2 with GOMAXPROCS=foo: %d Ps (%s), want %d", got, why, n)
	}
	t.Setenv("GOMAXPROCS", strconv.Itoa(n))
	if got, why := Extra(2); got != n || runtime.GOMAXPROCS(0) != n {
		t.Errorf("extra 2 with GOMAXPROCS=%d set: %d Ps (%s), want it kept", n, got, why)
	}
	unsetGOMAXPROCS(t)
	runtime.GOMAXPROCS(runtime.NumCPU())
	quota, err := cpuQuota()
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.NumCPU() + 2
	if quota > 0 {
		want = runtime.NumCPU()
	}
	got, why := Extra(2)
	if got != want || runtime.GOMAXPROCS(0) != want {
		t.Errorf("extra 2 on %d CPUs, quota %.2f: %d Ps (%s), want %d", runtime.NumCPU(), quota, got, why, want)
	}
	if again, why := Extra(2); again != got { // a second call adds nothing
		t.Errorf("extra 2 again: %d Ps (%s), want %d", again, why, got)
	}
	if runtime.NumCPU() > 1 { // as under a CPU limit: Go's number below the CPUs
		runtime.GOMAXPROCS(runtime.NumCPU() - 1)
		if got, why := Extra(2); got != runtime.NumCPU()-1 {
			t.Errorf("extra 2 under a limit of %d Ps: %d Ps (%s), want it kept", runtime.NumCPU()-1, got, why)
		}
	}
}

// TestCheckExtra: the flags take 0 to ExtraMax extra Ps.
func TestCheckExtra(t *testing.T) {
	for extra, ok := range map[int]bool{-1: false, 0: true, 2: true, ExtraMax: true, ExtraMax + 1: false} {
		if err := CheckExtra(extra); (err == nil) != ok {
			t.Errorf("%d: %v", extra, err)
		}
	}
}
