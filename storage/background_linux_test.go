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

// waitThreadsAt waits (10 s at most) until every thread of the process is at nice base: a
// lowered thread ends with its goroutine.
func waitThreadsAt(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for odd := otherNiceThreads(t, base); len(odd) > 0; odd = otherNiceThreads(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("threads left at another nice value than the process's %d: %v", base, odd)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
			if n != -1 && n != nice && (tableWork(c) || n != base) {
				t.Errorf("a file of %s created at nice %d (the process's %d, the background's %d)", c, n, base, nice)
			}
		}
	}
	rec.mu.Unlock()
	// A lowered thread ends with its goroutine (the goroutine never unlocks it), and threads
	// it needs started are started by the runtime's template thread, at the process's nice.
	waitThreadsAt(t, base)
}

func TestBackgroundFSUnwraps(t *testing.T) {
	mem := vfs.NewMem()
	if got := withBackgroundNice(mem, 5).Unwrap(); got != mem {
		t.Errorf("Unwrap answers %T, want the wrapped file system", got)
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

// TestMainThreadNeverLowered: a Pebble goroutine that creates its table on the main thread
// (the runtime's m0, which it parks for good instead of ending when a goroutine locked to it
// ends) leaves that thread at the process's nice, and other goroutines' threads are lowered
// and gone with them. The main goroutine runs the call (TestMain keeps it on the main thread).
func TestMainThreadNeverLowered(t *testing.T) {
	base := threadNice(t)
	if base >= backgroundNiceMax-1 {
		t.Skipf("the test runs at nice %d already", base)
	}
	const nice = backgroundNiceMax - 1
	onMain := make(chan [2]int)
	mainThread <- func() {
		lowerThisThread(nice)
		onMain <- [2]int{unix.Gettid(), threadNice(t)}
	}
	if got := <-onMain; got[0] != unix.Getpid() || got[1] != base {
		t.Errorf("on thread %d (the main one is %d): nice %d after lowerThisThread, want the process's %d", got[0], unix.Getpid(), got[1], base)
	}
	var wg sync.WaitGroup
	for range 8 { // goroutines of their own, as Pebble's: lowered, then their threads end
		wg.Add(1)
		go func() {
			defer wg.Done()
			lowerThisThread(nice)
			if tid, n := unix.Gettid(), threadNice(t); tid != unix.Getpid() && n != nice {
				t.Errorf("thread %d at nice %d after lowerThisThread, want %d", tid, n, nice)
			}
		}()
	}
	wg.Wait()
	waitThreadsAt(t, base)
}

// TestLoweredNeverBelowOwn: a thread already at a higher nice than asked keeps it (a process
// started at nice 10 keeps its background work at 10 or more, never above its requests).
func TestLoweredNeverBelowOwn(t *testing.T) {
	if threadNice(t) >= 10 {
		t.Skip("the test runs at nice 10 or more already")
	}
	got := make(chan int)
	go func() { // its thread ends with it (locked by lowerThisThread)
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10); err != nil {
			t.Error(err)
		}
		lowerThisThread(5)
		got <- threadNice(t)
	}()
	if n := <-got; n != 10 {
		t.Errorf("a thread at nice 10 asked for 5: nice %d, want 10", n)
	}
}
