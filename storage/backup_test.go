package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenRefusesAForeignDirectory: a directory that holds a store's files but no manifest (a
// copy cut off before it) is not opened as a new, empty store among them; a missing or empty
// directory, or one of other files, is a new store.
func TestOpenRefusesAForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "000005.sst"), []byte("half a table"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Shards: 1}); !errors.Is(err, ErrNotAStore) {
		t.Fatalf("a directory of files without a manifest: %v", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("the refused open wrote: %v", names)
	}
	// A directory with other files (an operator's log) is a new store's.
	withLog := t.TempDir()
	if err := os.WriteFile(filepath.Join(withLog, "ledgerd.log"), []byte("a log line"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(t.TempDir(), "new"), t.TempDir(), withLog} {
		s, err := Open(d, Options{Shards: 1})
		if err != nil {
			t.Fatalf("a new store in %s: %v", d, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(d, Options{Shards: 1}) // and opened again
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	}
}
