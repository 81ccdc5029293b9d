package storage

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStatsDiskUsage: Stats reports the free space and size of the file system the store is
// on (ledger_storage_disk_free_bytes and _size_bytes, which the disk alerts read), and says
// when the file system does not tell.
func TestStatsDiskUsage(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !st.DiskKnown || st.DiskSizeBytes == 0 || st.DiskFreeBytes > st.DiskSizeBytes {
		t.Fatalf("on the machine's disk: known %v, free %d, size %d", st.DiskKnown, st.DiskFreeBytes, st.DiskSizeBytes)
	}

	mem := vfs.NewMem()
	s, err = Open("db", Options{FS: mem, Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.DiskKnown {
		t.Fatalf("an in-memory file system without usage: %+v, want DiskKnown false", st)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 3 << 30, TotalBytes: 100 << 30, UsedBytes: 97 << 30})
	if st := s.Stats(); !st.DiskKnown || st.DiskFreeBytes != 3<<30 || st.DiskSizeBytes != 100<<30 {
		t.Fatalf("got known %v, free %d, size %d, want 3 GiB free of 100 GiB", st.DiskKnown, st.DiskFreeBytes, st.DiskSizeBytes)
	}
}

// TestTableBytesWrittenAreTables: the sstable bytes written (ledger_storage_sstable_bytes_
// written_total, the bench's write amplification) are the tables' bytes, not the WAL's too.
func TestTableBytesWrittenAreTables(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	b := s.db.NewBatch()
	for i := range uint64(5000) {
		if err := b.Set(idKey(nil, prefixTransfer, i), make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	levels, err := s.db.SSTables()
	if err != nil {
		t.Fatal(err)
	}
	var tables uint64
	for _, l := range levels {
		for _, tb := range l {
			tables += tb.Size
		}
	}
	after := s.Stats()
	if got := after.SSTableBytesWritten - before.SSTableBytesWritten; got != tables || after.WALBytes == before.WALBytes {
		t.Fatalf("sstable bytes written %d, the flushed tables hold %d (WAL %d bytes)", got, tables, after.WALBytes-before.WALBytes)
	}
}
