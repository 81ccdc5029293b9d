package storage

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Stats are the storage engine's figures an operator watches: write stalls first, since a
// stall holds every shard's commit (and so every reply) until Pebble catches up.
type Stats struct {
	WriteStalls         uint64  // times Pebble delayed writes (too many memtables or L0 files)
	WriteStallSeconds   float64 // time writes were delayed, in total
	Flushes             int64   // memtables flushed to L0
	Compactions         int64   // compactions finished
	CompactionDebtBytes uint64  // Pebble's estimate of the bytes to compact before the LSM is stable
	L0Files             int64   // sstables in L0
	L0Sublevels         int32   // read amplification of L0
	Tables              int64   // sstables in all levels (tables hold one key kind each: tableSpan)
	WALBytes            uint64  // bytes written to the write-ahead log
	SSTableBytesWritten uint64  // bytes written to sstables by flushes and compactions
	DiskBytes           uint64  // disk space the store uses
	// ZombieTableBytes are sstables no longer in the LSM that an open iterator still holds
	// (on disk until it closes); SnapshotPinnedBytes is the running total of keys flushes and
	// compactions kept only because a snapshot could see them.
	ZombieTableBytes, SnapshotPinnedBytes uint64
	// DiskFreeBytes and DiskSizeBytes are the free space (what this process may still use,
	// without the blocks reserved for root) and the size of the file system the store is on;
	// DiskKnown is false when the file system does not tell (an in-memory one).
	DiskFreeBytes, DiskSizeBytes uint64
	DiskKnown                    bool
}

// stalls counts Pebble's write stalls through its event listener.
type stalls struct {
	count atomic.Uint64
	nanos atomic.Int64
	began atomic.Int64 // Unix ns of the stall in progress; 0 when none
}

func (s *stalls) listener() pebble.EventListener {
	return pebble.EventListener{
		WriteStallBegin: func(pebble.WriteStallBeginInfo) {
			s.count.Add(1)
			s.began.Store(time.Now().UnixNano())
		},
		WriteStallEnd: func() {
			if b := s.began.Swap(0); b != 0 {
				s.nanos.Add(time.Now().UnixNano() - b)
			}
		},
	}
}

// tableBytesWritten is what flushes and compactions wrote to sstables, summed over the levels:
// Pebble's Metrics.Total adds the WAL's bytes to its flushed bytes, which made the write
// amplification (these bytes over the WAL's) read one too high.
func tableBytesWritten(m *pebble.Metrics) uint64 {
	var n uint64
	for i := range m.Levels {
		n += m.Levels[i].TableBytesFlushed + m.Levels[i].TableBytesCompacted
	}
	return n
}

// Stats reads the engine's figures (cheap enough for every metrics scrape).
func (s *Store) Stats() Stats {
	m := s.db.Metrics()
	stallNanos := s.stalls.nanos.Load()
	if b := s.stalls.began.Load(); b != 0 {
		stallNanos += time.Now().UnixNano() - b
	}
	total := m.Total()
	st := Stats{
		WriteStalls:         s.stalls.count.Load(),
		WriteStallSeconds:   time.Duration(stallNanos).Seconds(),
		Flushes:             m.Flush.Count,
		Compactions:         m.Compact.Count,
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		L0Files:             m.Levels[0].TablesCount,
		L0Sublevels:         m.Levels[0].Sublevels,
		Tables:              total.TablesCount,
		WALBytes:            m.WAL.BytesWritten,
		SSTableBytesWritten: tableBytesWritten(m),
		DiskBytes:           m.DiskSpaceUsage(),
		ZombieTableBytes:    m.Table.ZombieSize,
		SnapshotPinnedBytes: m.Snapshots.PinnedSize,
	}
	// One statfs call: cheap enough for every scrape.
	if u, err := s.fs.GetDiskUsage(s.dir); err == nil {
		st.DiskFreeBytes, st.DiskSizeBytes, st.DiskKnown = u.AvailBytes, u.TotalBytes, true
	}
	return st
}
