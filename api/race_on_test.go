//go:build race

package api

// raceOn: the race detector is on, under which sync.Pool drops a share of what is put back.
const raceOn = true
