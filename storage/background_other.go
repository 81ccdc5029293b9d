//go:build !linux

package storage

import "github.com/cockroachdb/pebble/v2/vfs"

const backgroundNiceSupported = false

// withBackgroundNice answers fs: CheckBackgroundNice refuses any nice value but 0 here.
func withBackgroundNice(fs vfs.FS, nice int) vfs.FS { return fs }
