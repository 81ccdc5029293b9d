package storage

import (
	"os"
	"runtime"
	"testing"
)

// The test binary's main goroutine stays on the process's main thread (a LockOSThread in init
// does that) and runs what the tests send on mainThread, while they run on other goroutines:
// TestMainThreadNeverLowered needs code on the main thread.
func init() { runtime.LockOSThread() }

var mainThread = make(chan func())

func TestMain(m *testing.M) {
	code := make(chan int)
	go func() { code <- m.Run() }()
	for {
		select {
		case f := <-mainThread:
			f()
		case c := <-code:
			os.Exit(c)
		}
	}
}
