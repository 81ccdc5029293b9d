package storage

import (
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// tableWriteBufferBytes is how much of a table Pebble's flushes and compactions hand to the
// operating system at once. Pebble's own buffer is 4 KiB, one data block, so every block of a
// table was a write system call of its own: some 10% of ledgerd's CPU at batch 8190.
const tableWriteBufferBytes = 256 << 10

// tableWritesFS gathers the writes of the tables Pebble's flushes and compactions create
// (tableWork) into tableWriteBufferBytes before they reach the file. Every other file, the
// write-ahead log among them, is the wrapped file system's as it is.
type tableWritesFS struct {
	vfs.FS
}

// tableWork names the files Pebble creates for the tables of its flushes and compactions,
// from goroutines of its own (a checkpoint's copies are WriteCategoryUnspecified and made by
// the caller): written once from start to end, then synced and closed (objstorageprovider's
// Finish). backgroundFS lowers the priority of the same work.
func tableWork(category vfs.DiskWriteCategory) bool {
	switch category {
	case "pebble-memtable-flush", "pebble-compaction", "pebble-blob-file-rewrite":
		return true
	}
	return false
}

// Unwrap answers the file system it wraps (vfs.FS's contract).
func (fs tableWritesFS) Unwrap() vfs.FS { return fs.FS }

func (fs tableWritesFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !tableWork(category) {
		return f, err
	}
	return &bufferedFile{File: f}, nil
}

// tableBuffers are the buffers of the tables being written, used again for the next: a flush
// split into many small tables (tableSpan) allocates none for each.
var tableBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, tableWriteBufferBytes)
	return &b
}}

// bufferedFile holds what was written to it until it has tableWriteBufferBytes, or until
// anything else is asked of the file: every other call (a sync, a size, a read, a close) first
// writes out what it holds, so the file's contents and order are the writer's. A failed write
// out is answered by that call, and by every later one: the table is abandoned (Pebble
// removes a table whose write failed), never completed with a hole.
type bufferedFile struct {
	vfs.File
	buf []byte
	err error
}

func (f *bufferedFile) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if len(f.buf)+len(p) > tableWriteBufferBytes {
		if err := f.flush(); err != nil {
			return 0, err
		}
		if len(p) >= tableWriteBufferBytes {
			return f.writeOut(p)
		}
	}
	if f.buf == nil {
		f.buf = (*tableBuffers.Get().(*[]byte))[:0]
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

func (f *bufferedFile) writeOut(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		f.err = err
	}
	return n, err
}

func (f *bufferedFile) flush() error {
	if f.err != nil {
		return f.err
	}
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.writeOut(f.buf)
	f.buf = f.buf[:0]
	return err
}

func (f *bufferedFile) Close() error {
	err := f.flush()
	if f.buf != nil {
		b := f.buf[:0]
		tableBuffers.Put(&b)
		f.buf = nil
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *bufferedFile) Sync() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *bufferedFile) SyncData() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *bufferedFile) SyncTo(length int64) (bool, error) {
	if err := f.flush(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

func (f *bufferedFile) Stat() (vfs.FileInfo, error) {
	if err := f.flush(); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

func (f *bufferedFile) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *bufferedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *bufferedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *bufferedFile) Preallocate(off, length int64) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Preallocate(off, length)
}

func (f *bufferedFile) Prefetch(off, length int64) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Prefetch(off, length)
}

func (f *bufferedFile) Fd() uintptr {
	// Whoever writes through the descriptor writes after what this holds.
	_ = f.flush()
	return f.File.Fd()
}
