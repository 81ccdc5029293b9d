package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestWriteWhileRead: writers and a reader at once (run with -race): every write is kept
// whole, and String is a copy that later writes do not change.
func TestWriteWhileRead(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if _, err := b.Write([]byte("line\n")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			if s := b.String(); strings.Count(s, "line\n")*5 != len(s) {
				t.Errorf("a torn write: %q", s)
				return
			}
		}
	})
	wg.Wait()
	s := b.String()
	if strings.Count(s, "line\n") != 400 {
		t.Fatalf("%d lines, want 400", strings.Count(s, "line\n"))
	}
	_, _ = b.Write([]byte("more"))
	if strings.HasSuffix(s, "more") {
		t.Fatal("String's result changed after a write")
	}
}
