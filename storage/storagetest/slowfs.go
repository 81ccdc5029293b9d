// Package storagetest has file systems for tests that need storage to misbehave: a WAL whose
// syncs stall until the test lets them go, or fail.
package storagetest

import (
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// StallFS wraps a file system so that syncs of write-ahead logs (files ending in .log) wait
// while the stall is on: a disk that has stopped answering. Writes still go through, so a
// Pebble batch becomes visible to readers while its commit waits for its sync.
type StallFS struct {
	vfs.FS
	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed when the stall ends
	syncs   int           // syncs waiting now
	fail    error         // every WAL sync fails with it, when set
}

// Fail makes every WAL sync from now on fail with err (nil: succeed again): a disk that
// reports write errors.
func (s *StallFS) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// NewStallFS wraps fs; nothing stalls until Stall.
func NewStallFS(fs vfs.FS) *StallFS { return &StallFS{FS: fs} }

// Stall makes every WAL sync from now on wait until Resume.
func (s *StallFS) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stalled {
		s.stalled, s.resume = true, make(chan struct{})
	}
}

// Resume lets the waiting syncs, and later ones, go.
func (s *StallFS) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.stalled = false
		close(s.resume)
	}
}

// Waiting is the number of WAL syncs waiting for Resume.
func (s *StallFS) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

func (s *StallFS) wait() error {
	s.mu.Lock()
	if s.fail != nil {
		defer s.mu.Unlock()
		return s.fail
	}
	if !s.stalled {
		s.mu.Unlock()
		return nil
	}
	resume := s.resume
	s.syncs++
	s.mu.Unlock()
	<-resume
	s.mu.Lock()
	s.syncs--
	s.mu.Unlock()
	return nil
}

func (s *StallFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &stallFile{File: f, fs: s}, nil
}

// Create implements vfs.FS.
func (s *StallFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := s.FS.Create(name, category)
	return s.wrap(name, f, err)
}

// ReuseForWrite implements vfs.FS.
func (s *StallFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := s.FS.ReuseForWrite(oldname, newname, category)
	return s.wrap(newname, f, err)
}

// OpenReadWrite implements vfs.FS.
func (s *StallFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := s.FS.OpenReadWrite(name, category, opts...)
	return s.wrap(name, f, err)
}

type stallFile struct {
	vfs.File
	fs *StallFS
}

func (f *stallFile) Sync() error {
	if err := f.fs.wait(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *stallFile) SyncData() error {
	if err := f.fs.wait(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *stallFile) SyncTo(length int64) (bool, error) {
	if err := f.fs.wait(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}
