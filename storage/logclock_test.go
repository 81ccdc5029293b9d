package storage

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLogClockStartsFromStoredTimes: the log clock goes on from the largest time stored, and
// is shared by every log: a round written after another has the larger time even when its
// writer's clock is behind.
func TestLogClockStartsFromStoredTimes(t *testing.T) {
	fs := vfs.NewMem()
	commit := func(s *Store, shard uint32, now uint64) LogRound {
		t.Helper()
		w := s.OrderWriter(shard)
		defer w.Close()
		o := testOrder()
		o.ID = uint64(shard)<<32 | now
		o.Key = "k" + string(rune('a'+shard))
		o.Exceptions = nil
		o.Updated = now
		if err := w.Commit([]OrderWrite{{Order: o, New: true}}, o.ID); err != nil {
			t.Fatal(err)
		}
		return w.LastRound()
	}
	s, err := Open("db", Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a := commit(s, 0, 1000)
	b := commit(s, 1, 10) // another log, its writer's clock behind
	if a.Time != 1000 || b.Time != 1001 {
		t.Fatalf("times %d then %d, want 1000 then 1001", a.Time, b.Time)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open("db", Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c := commit(s, 0, 5); c.Time != 1002 || c.Round != 2 {
		t.Fatalf("after a restart: round %d at %d, want round 2 at 1002", c.Round, c.Time)
	}
}
