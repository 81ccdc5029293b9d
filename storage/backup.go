package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrBackupExists: the backup's directory exists already; nothing was written.
var ErrBackupExists = errors.New("storage: the backup's directory exists")

// BackupMarker is the file a complete backup holds, written last (before the backup's
// directory takes its name): when the backup was completed, and its size.
const BackupMarker = "LEDGER-BACKUP"

// BackupInfo is what a backup wrote.
type BackupInfo struct {
	Files     int
	Bytes     int64
	Completed time.Time
}

// Backup writes a consistent copy of the store into dir, which must not exist: a
// point-in-time view holding every write acknowledged before the call (the write-ahead log
// is synced first, then copied with the manifest and the tables as of one instant), taken
// while the store serves. Tables are hard-linked when dir is on the store's file system
// (instant, and no bytes are copied: a table is never changed, and a compaction that
// deletes it from the store leaves the backup's link), copied otherwise.
//
// The copy is written into a hidden directory beside dir (".NAME.partial"), synced, marked
// complete (BackupMarker), and only then renamed to dir, the rename synced: a backup cut off
// (an error, a crash, a kill) never leaves a directory under dir's name, and its partial
// directory is removed by the next backup of that name. The copy is a store of its own:
// opening it recovers it as after a crash.
func (s *Store) Backup(dir string) (BackupInfo, error) {
	if _, err := os.Lstat(dir); err == nil {
		return BackupInfo{}, fmt.Errorf("%w: %s", ErrBackupExists, dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("storage: backup: %w", err)
	}
	parent := filepath.Dir(dir)
	partial := filepath.Join(parent, "."+filepath.Base(dir)+".partial")
	if err := os.RemoveAll(partial); err != nil { // what a backup of this name cut off left
		return BackupInfo{}, fmt.Errorf("storage: backup: %w", err)
	}
	info, err := s.backupInto(partial)
	if err == nil {
		err = os.Rename(partial, dir)
	}
	if err == nil {
		err = syncDir(parent)
	}
	if err != nil {
		return BackupInfo{}, errors.Join(fmt.Errorf("storage: backup to %s: %w", dir, err), os.RemoveAll(partial))
	}
	return info, nil
}

// backupInto checkpoints the store into dir (which must not exist), measures it and marks it
// complete, synced.
func (s *Store) backupInto(dir string) (BackupInfo, error) {
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return BackupInfo{}, err
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
		return info, err
	}
	info.Completed = time.Now().UTC()
	marker := fmt.Sprintf("ledger backup\ncompleted %s\nfiles %d\nbytes %d\n", info.Completed.Format(time.RFC3339Nano), info.Files, info.Bytes)
	f, err := os.OpenFile(filepath.Join(dir, BackupMarker), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return info, err
	}
	_, err = f.WriteString(marker)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return info, err
	}
	return info, syncDir(dir)
}

// BackupCompleted reads the completion time of the backup in dir from its marker; ok false
// when dir holds no complete backup.
func BackupCompleted(dir string) (completed time.Time, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, BackupMarker))
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "completed "); found {
			t, err := time.Parse(time.RFC3339Nano, v)
			return t, err == nil
		}
	}
	return time.Time{}, false
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
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
