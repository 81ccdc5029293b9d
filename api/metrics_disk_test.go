package api

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/storage"
)

// TestDiskMetrics: the free space and size of the store's file system are served (the disk
// alerts divide one by the other), and left out when the file system does not tell rather
// than served as 0, which would read as a full disk.
func TestDiskMetrics(t *testing.T) {
	mem := vfs.NewMem()
	store, err := storage.Open("db", storage.Options{FS: mem, Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := actors.Start(store, actors.Config{Shards: 1, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	m := NewMetrics()
	m.WatchLedger(l)
	gauges := func() map[string]float64 {
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range families {
			for _, s := range mf.GetMetric() {
				if s.GetGauge() != nil {
					out[mf.GetName()] = s.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	g := gauges()
	for _, name := range []string{"ledger_storage_disk_free_bytes", "ledger_storage_disk_size_bytes"} {
		if v, ok := g[name]; ok {
			t.Errorf("%s served as %v by a file system that does not tell its usage", name, v)
		}
	}
	if _, ok := g["ledger_storage_disk_bytes"]; !ok {
		t.Error("ledger_storage_disk_bytes not served")
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 5 << 30, TotalBytes: 50 << 30, UsedBytes: 45 << 30})
	g = gauges()
	if g["ledger_storage_disk_free_bytes"] != 5<<30 || g["ledger_storage_disk_size_bytes"] != 50<<30 {
		t.Errorf("free %v, size %v, want 5 GiB of 50 GiB", g["ledger_storage_disk_free_bytes"], g["ledger_storage_disk_size_bytes"])
	}
}
