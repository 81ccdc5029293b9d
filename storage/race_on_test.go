//go:build race

package storage

// raceOn: the race detector is on, which makes the store's reads some fifty times as slow;
// the longest tests do less.
const raceOn = true
