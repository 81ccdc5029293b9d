package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// ErrBackupExists: the backup's directory exists already; nothing was written.
var ErrBackupExists = errors.New("storage: the backup's directory exists")

// BackupInfo is what a backup wrote.
type BackupInfo struct {
	Files int
	Bytes int64
}

// Backup writes a consistent copy of the store into dir, which must not exist: a
// point-in-time view holding every write acknowledged before the call (the write-ahead log
// is synced first, then copied with the manifest and the tables as of one instant), taken
// while the store serves. Tables are hard-linked when dir is on the store's file system
// (instant, and no bytes are copied: a table is never changed, and a compaction that
// deletes it from the store leaves the backup's link), copied otherwise; the copy is synced
// before Backup returns. The copy is a store of its own: opening it recovers it as after a
// crash. A failed backup removes what it wrote.
func (s *Store) Backup(dir string) (BackupInfo, error) {
	if _, err := os.Lstat(dir); err == nil {
		return BackupInfo{}, fmt.Errorf("%w: %s", ErrBackupExists, dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("storage: backup: %w", err)
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return BackupInfo{}, errors.Join(fmt.Errorf("storage: backup to %s: %w", dir, err), os.RemoveAll(dir))
	}
	var info BackupInfo
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		info.Files++
		info.Bytes += fi.Size()
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("storage: backup %s written, but not measured: %w", dir, err)
	}
	return info, nil
}

// VerifyDir verifies the stopped store in dir (a backup, or a store no process holds):
// Verify on a snapshot of it, opened read-only, so that nothing in it changes (no WAL
// replayed into a new table, no format or shard records written).
func VerifyDir(dir string) (Report, error) {
	if _, err := os.Stat(dir); err != nil {
		return Report{}, err
	}
	store, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		return Report{}, err
	}
	snap := store.Snapshot()
	rep, err := Verify(snap, store.Shards())
	return rep, errors.Join(err, snap.Close(), store.Close())
}
