package storage

import (
	"log/slog"
	"runtime"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

const backgroundNiceSupported = true

// backgroundFS lowers the priority of Pebble's flushes and compactions. Pebble runs each in a
// goroutine of its own, which creates the tables it writes with a category naming the work:
// that goroutine is locked to its OS thread and the thread's nice value raised (Linux applies
// setpriority to one thread when given its id). The goroutine never unlocks, so when it ends
// the runtime ends the thread with it, and no other goroutine ever runs at the lowered
// priority (an unprivileged process cannot raise it back).
type backgroundFS struct {
	vfs.FS
	nice int
}

// Unwrap answers the file system it wraps (vfs.FS's contract; the embedded one's Unwrap would
// skip it).
func (fs backgroundFS) Unwrap() vfs.FS { return fs.FS }

func (fs backgroundFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if tableWork(category) {
		lowerThisThread(fs.nice)
	}
	return fs.FS.Create(name, category)
}

// lowerThisThread locks the calling goroutine to its thread for good and sets the thread's
// nice value, never below the thread's own (a process started at nice 10 keeps its
// background work at 10 or more, never above its requests). A failure only leaves the work at
// the process's priority, so it is not an error of the write; it is logged once. The
// process's main thread is left alone: the runtime cannot end it when its locked goroutine
// ends, and parks it for good instead, which would show the whole process at that nice value
// in ps and top (they read the main thread's); work that lands there runs at the process's
// priority.
func lowerThisThread(nice int) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	if tid == unix.Getpid() {
		runtime.UnlockOSThread()
		return
	}
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err == nil {
		err = unix.Setpriority(unix.PRIO_PROCESS, tid, max(nice, 20-prio)) // the call answers 20 - nice
	}
	if err != nil {
		lowerFailed.Do(func() {
			slog.Warn("storage: cannot lower the priority of Pebble's background work; it runs at the process's", "nice", nice, "err", err)
		})
	}
}

var lowerFailed sync.Once

// withBackgroundNice wraps fs so that Pebble's background work runs at nice (0: fs itself).
func withBackgroundNice(fs vfs.FS, nice int) vfs.FS {
	if nice == 0 {
		return fs
	}
	if fs == nil {
		fs = vfs.Default
	}
	return backgroundFS{FS: fs, nice: nice}
}
