package storage

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestFlushedTablesSynced (review): once Pebble has flushed (the table is in the manifest),
// every byte of every table is synced: a crash that keeps only synced data loses none of a
// table. It goes through Pebble's own path (syncingFile's Sync is SyncData, then Close).
func TestFlushedTablesSynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs, Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 200)
	for i := range 10000 { // some 2 MB: several buffers' worth, and a partial one at the end
		if err := s.db.Set([]byte(fmt.Sprintf("z%08d", i)), val, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	names, err := fs.List("db")
	if err != nil {
		t.Fatal(err)
	}
	tables := 0
	for _, n := range names {
		if !strings.HasSuffix(n, ".sst") {
			continue
		}
		tables++
		live, err := fs.Stat("db/" + n)
		if err != nil {
			t.Fatal(err)
		}
		synced, err := crashed.Stat("db/" + n)
		if err != nil {
			t.Fatalf("table %s: not in the crashed copy: %v", n, err)
		}
		if synced.Size() != live.Size() {
			t.Errorf("table %s: %d bytes synced of %d", n, synced.Size(), live.Size())
		}
	}
	if tables == 0 {
		t.Fatal("no table flushed")
	}
	_ = s.Close()
}
