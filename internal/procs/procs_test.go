package procs

import (
	"runtime"
	"strconv"
	"testing"
)

func TestForBackground(t *testing.T) {
	n := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(n)
	t.Setenv("GOMAXPROCS", "")
	if got := ForBackground(0); got != n {
		t.Errorf("nice 0: %d Ps, want the runtime's %d", got, n)
	}
	if got := ForBackground(19); got != n+1 {
		t.Errorf("nice 19: %d Ps, want %d + 1", got, n)
	}
	runtime.GOMAXPROCS(n)
	t.Setenv("GOMAXPROCS", strconv.Itoa(n))
	if got := ForBackground(19); got != n {
		t.Errorf("nice 19 with GOMAXPROCS=%d set: %d Ps, want it kept", n, got)
	}
}
