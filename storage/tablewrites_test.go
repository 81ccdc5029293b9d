package storage

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestTableWritesGathered: a table's writes reach its file in tableWriteBufferBytes (a write
// of that much or more at once, directly), its contents in the order written; anything else
// asked of the file (its size, a sync, a read, a close) first writes out what is held. Files
// that are not a flush's or a compaction's (the write-ahead log's) are written as they come.
func TestTableWritesGathered(t *testing.T) {
	mem := vfs.NewMem()
	fs := tableWritesFS{FS: mem}
	f, err := fs.Create("000001.sst", "pebble-memtable-flush")
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	write := func(n int) {
		t.Helper()
		p := bytes.Repeat([]byte{byte(len(want))}, n)
		want = append(want, p...)
		if k, err := f.Write(p); k != n || err != nil {
			t.Fatalf("write of %d: %d, %v", n, k, err)
		}
	}
	onDisk := func() int {
		t.Helper()
		fi, err := mem.Stat("000001.sst")
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Size())
	}
	for range tableWriteBufferBytes / 4096 {
		write(4096)
	}
	if got := onDisk(); got != 0 {
		t.Fatalf("%d bytes in the file after writes that fit the buffer; want 0", got)
	}
	write(10)
	if got := onDisk(); got != tableWriteBufferBytes {
		t.Fatalf("%d bytes in the file once the buffer overflowed; want %d", got, tableWriteBufferBytes)
	}
	write(tableWriteBufferBytes + 1) // passes the buffer, after the 10 bytes held
	if got := onDisk(); got != len(want) {
		t.Fatalf("%d bytes in the file after a write larger than the buffer; want %d", got, len(want))
	}
	write(100)
	if fi, err := f.Stat(); err != nil || int(fi.Size()) != len(want) {
		t.Fatalf("Stat: %v, %v; want the %d bytes written", fi, err, len(want))
	}
	write(7)
	if err := f.Sync(); err != nil || onDisk() != len(want) {
		t.Fatalf("Sync: %v, %d bytes in the file; want %d", err, onDisk(), len(want))
	}
	write(3)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := mem.Open("000001.sst")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file holds %d bytes (%v); want the %d written, in order", len(got), err, len(want))
	}

	wal, err := fs.Create("000002.log", "pebble-wal")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := wal.(*bufferedFile); ok {
		t.Fatal("the write-ahead log's file is buffered")
	}
	_ = wal.Close()
}

// failingFile fails every write after the first `ok` bytes.
type failingFile struct {
	vfs.File
	ok, written int
}

var errDiskFull = errors.New("disk full")

func (f *failingFile) Write(p []byte) (int, error) {
	if f.written+len(p) > f.ok {
		return 0, errDiskFull
	}
	f.written += len(p)
	return len(p), nil
}

func (f *failingFile) Sync() error  { return nil }
func (f *failingFile) Close() error { return nil }

// TestTableWriteFailureSticks: a failed write out is the answer of the call that made it
// (a write, a sync, a close) and of every later one: Pebble abandons the table, and no later
// write lands after a hole.
func TestTableWriteFailureSticks(t *testing.T) {
	under := &failingFile{ok: tableWriteBufferBytes}
	f := &bufferedFile{File: under}
	if _, err := f.Write(make([]byte, tableWriteBufferBytes)); err != nil {
		t.Fatalf("a write that fits the buffer: %v", err)
	}
	if _, err := f.Write(make([]byte, 10)); err != nil {
		t.Fatalf("the first write out (within what the file takes): %v", err)
	}
	if err := f.Sync(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Sync after a failed write out: %v; want %v", err, errDiskFull)
	}
	if _, err := f.Write([]byte{1}); !errors.Is(err, errDiskFull) {
		t.Fatalf("a write after a failed write out: %v; want %v", err, errDiskFull)
	}
	if err := f.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close after a failed write out: %v; want %v", err, errDiskFull)
	}
	if under.written != tableWriteBufferBytes {
		t.Fatalf("%d bytes reached the file; want %d, none after the failure", under.written, tableWriteBufferBytes)
	}
}

// TestTableDurableThroughPebbleChain: a table written the way Pebble writes one (bufio writable
// over vfs.NewSyncingFile over the store's file system, then Finish: flush, Sync, Close) is
// whole after a crash that keeps only synced data. Pebble's syncingFile.Sync calls SyncData,
// not Sync, and its bytes_per_sync calls SyncTo: both must write out what the buffer holds.
func TestTableDurableThroughPebbleChain(t *testing.T) {
	for _, bytesPerSync := range []int{0, 512 << 10} {
		mem := vfs.NewCrashableMem()
		if err := mem.MkdirAll("db", 0755); err != nil {
			t.Fatal(err)
		}
		fs := tableWritesFS{FS: mem}
		f, err := fs.Create("db/000007.sst", "pebble-compaction")
		if err != nil {
			t.Fatal(err)
		}
		w := objstorageprovider.NewFileWritable(vfs.NewSyncingFile(f, vfs.SyncingFileOptions{BytesPerSync: bytesPerSync}))
		var want []byte
		for i := 0; len(want) < 3<<20+12345; i++ {
			p := bytes.Repeat([]byte{byte(i)}, 4096+i%7)
			want = append(want, p...)
			if err := w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"", "db"} {
			d, err := mem.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			_ = d.Close()
		}
		crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		r, err := crashed.Open("db/000007.sst")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("bytes_per_sync %d: after a crash the table holds %d bytes (%v); want the %d written and synced", bytesPerSync, len(got), err, len(want))
		}
	}
}
