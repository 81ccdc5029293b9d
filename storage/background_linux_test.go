package storage

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// threadNice is the nice value of the calling goroutine's thread now.
func threadNice(t *testing.T) int {
	t.Helper()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	return 20 - prio // the system call answers 20 - nice
}

// niceRecordingFS records, by category, the nice value of the thread that creates each file;
// -1 for a file made on the main thread, which is never lowered (lowerThisThread).
type niceRecordingFS struct {
	vfs.FS
	t    *testing.T
	mu   sync.Mutex
	nice map[vfs.DiskWriteCategory][]int
}

func (fs *niceRecordingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	n := threadNice(fs.t)
	if unix.Gettid() == unix.Getpid() {
		if n != threadNiceBase {
			fs.t.Errorf("a file of %s made on the main thread at nice %d", category, n)
		}
		n = -1
	}
	fs.mu.Lock()
	fs.nice[category] = append(fs.nice[category], n)
	fs.mu.Unlock()
	return fs.FS.Create(name, category)
}

// threadNiceBase is the process's nice value, read once.
var threadNiceBase = func() int {
	prio, _ := unix.Getpriority(unix.PRIO_PROCESS, 0)
	return 20 - prio
}()

// otherNiceThreads lists the process's threads whose nice value is not base, read from
// /proc/self/task/*/stat (the 19th field).
func otherNiceThreads(t *testing.T, base int) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var odd []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // the name may hold spaces
		if n, err := strconv.Atoi(fields[16]); err == nil && n != base {
			odd = append(odd, p+" nice "+fields[16])
		}
	}
	return odd
}

// TestBackgroundWorkRunsNiced: with BackgroundNice, the tables of a flush and of a compaction
// are made on threads at that nice value, also after a reopen that replays the WAL; the
// caller's thread keeps its priority, and no thread outlives its work at the lowered one.
func TestBackgroundWorkRunsNiced(t *testing.T) {
	runtime.LockOSThread() // so that this goroutine's thread is the one checked
	defer runtime.UnlockOSThread()
	base := threadNice(t)
	if base >= backgroundNiceMax-1 {
		t.Skipf("the test runs at nice %d already", base)
	}
	const nice = backgroundNiceMax - 1
	rec := &niceRecordingFS{FS: vfs.NewMem(), t: t, nice: map[vfs.DiskWriteCategory][]int{}}
	s, err := Open("db", Options{FS: rec, Shards: 1, CacheBytes: 1 << 20, BackgroundNice: nice})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 { // three overlapping tables in L0, which the compaction rewrites
		b := s.db.NewBatch()
		for i := range uint64(2000) {
			if err := b.Set(idKey(nil, prefixTransfer, i*3+uint64(round)), make([]byte, 100), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Compact(context.Background(), []byte{prefixTransfer}, []byte{prefixTransfer + 1}, false); err != nil {
		t.Fatal(err)
	}
	// A write left in the WAL alone: the next Open replays it into a memtable, which is
	// flushed in the background, not on the opener's goroutine.
	b := s.db.NewBatch()
	if err := b.Set(idKey(nil, prefixTransfer, 1<<40), make([]byte, 100), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flushes := len(rec.nice["pebble-memtable-flush"])
	if s, err = Open("db", Options{FS: rec, Shards: 1, CacheBytes: 1 << 20, BackgroundNice: nice}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rec.nice["pebble-memtable-flush"]) == flushes {
		t.Error("the reopened store flushed no table")
	}
	if got := threadNice(t); got != base {
		t.Fatalf("the caller's thread is at nice %d after the store's work, want %d", got, base)
	}
	rec.mu.Lock()
	for _, c := range []vfs.DiskWriteCategory{"pebble-memtable-flush", "pebble-compaction"} {
		if len(rec.nice[c]) == 0 {
			t.Errorf("no table created as %s", c)
		}
	}
	// A background goroutine may go on to other files after its table (a flush that rotates
	// the manifest makes the new one): those are at nice too. No file is made at a third
	// value, and every table of a flush or a compaction is made at nice, but on the main
	// thread (-1), checked at the process's nice by niceRecordingFS.
	for c, ns := range rec.nice {
		for _, n := range ns {
			if n != -1 && n != nice && (backgroundWork(c) || n != base) {
				t.Errorf("a file of %s created at nice %d (the process's %d, the background's %d)", c, n, base, nice)
			}
		}
	}
	rec.mu.Unlock()
	// A lowered thread ends with its goroutine (the goroutine never unlocks it), and threads
	// it needs started are started by the runtime's template thread, at the process's nice.
	deadline := time.Now().Add(10 * time.Second)
	for odd := otherNiceThreads(t, base); len(odd) > 0; odd = otherNiceThreads(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("threads left at another nice value than the process's %d: %v", base, odd)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBackgroundNiceOutOfRangeRefused(t *testing.T) {
	for _, n := range []int{-1, backgroundNiceMax + 1} {
		if _, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, BackgroundNice: n}); err == nil ||
			!strings.Contains(err.Error(), "background nice must be 0 to 19") {
			t.Errorf("BackgroundNice %d: got %v, want refused", n, err)
		}
	}
}

// TestMainThreadNeverLowered: goroutines lowering their threads as Pebble's background ones
// do, some of them on the main thread (the runtime's m0, which it parks for good instead of
// ending when its locked goroutine ends): once they have ended no thread is left lowered, the
// main thread included, and a goroutine that ran on the main thread was not lowered.
func TestMainThreadNeverLowered(t *testing.T) {
	base := threadNice(t)
	if base >= backgroundNiceMax-1 {
		t.Skipf("the test runs at nice %d already", base)
	}
	onMain := 0
	for batch := 0; batch < 50 && onMain == 0; batch++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lowerThisThread(backgroundNiceMax - 1)
				tid, n := unix.Gettid(), threadNice(t)
				mu.Lock()
				defer mu.Unlock()
				if tid == unix.Getpid() {
					onMain++
					if n != base {
						t.Errorf("the main thread lowered to nice %d", n)
					}
				} else if n != backgroundNiceMax-1 {
					t.Errorf("thread %d at nice %d after lowerThisThread, want %d", tid, n, backgroundNiceMax-1)
				}
			}()
		}
		wg.Wait()
	}
	if onMain == 0 {
		t.Fatal("no goroutine ran on the main thread in 50 batches: the main thread was not checked")
	}
	deadline := time.Now().Add(10 * time.Second)
	for odd := otherNiceThreads(t, base); len(odd) > 0; odd = otherNiceThreads(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("threads left at another nice value than the process's %d: %v", base, odd)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
