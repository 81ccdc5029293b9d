package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
)

// busyStore is a one-shard store of accounts 1 to accounts with a writer that books rounds of
// transfers between them.
type busyStore struct {
	t        testing.TB
	s        *Store
	b        *ledger.Book
	w        *Writer
	rng      *rand.Rand
	accounts uint64
	next     uint64 // the next transfer id
}

func newBusyStore(t testing.TB, accounts uint64, iterKeys int) *busyStore {
	t.Helper()
	return newBusyStoreOpts(t, accounts, Options{SnapshotIterKeysMax: iterKeys})
}

func newBusyStoreOpts(t testing.TB, accounts uint64, opts Options) *busyStore {
	t.Helper()
	opts.FS, opts.Shards, opts.CacheBytes = vfs.NewMem(), 1, 1<<20
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	bs := &busyStore{t: t, s: s, b: ledger.NewBook(0, 1), w: s.Writer(0), rng: rand.New(rand.NewPCG(1, 2)),
		accounts: accounts, next: 1 << 20}
	t.Cleanup(func() { _ = bs.w.Close() })
	as := make([]ledger.Account, accounts)
	for i := range as {
		as[i] = ledger.Account{ID: uint64(i) + 1, Ledger: 1, Code: 1}
	}
	var fx ledger.Effects
	bs.b.CreateAccounts(1, as, make([]ledger.AccountResult, len(as)), &fx)
	fx.Freeze()
	if err := bs.w.Commit(&fx, bs.b.Clock()); err != nil {
		t.Fatal(err)
	}
	return bs
}

// round books n transfers between random accounts in one round.
func (bs *busyStore) round(n int) error {
	ts := make([]ledger.Transfer, n)
	for i := range ts {
		d := bs.rng.Uint64N(bs.accounts) + 1
		c := d%bs.accounts + 1
		ts[i] = ledger.Transfer{ID: bs.next, DebitAccountID: d, CreditAccountID: c, Amount: bs.rng.Uint64N(100) + 1, Ledger: 1, Code: 1}
		bs.next++
	}
	var fx ledger.Effects
	rs := make([]ledger.TransferResult, n)
	bs.b.CreateTransfers(bs.b.Clock()+1, ts, rs, &fx)
	for i, r := range rs {
		if r != ledger.ResultOK {
			return fmt.Errorf("transfer %d: %v", ts[i].ID, r)
		}
	}
	fx.Freeze()
	return bs.w.Commit(&fx, bs.b.Clock())
}

// rounds books count rounds of n transfers, failing the test on an error (from the test's
// goroutine only).
func (bs *busyStore) rounds(count, n int) {
	bs.t.Helper()
	for range count {
		if err := bs.round(n); err != nil {
			bs.t.Fatal(err)
		}
	}
}

// TestVerifyUnderWritesSeesOneSnapshot: Verify reads a snapshot with many short iterators (a
// few keys each here), while rounds that move every account's balance commit. It finds no
// problem, and reports exactly what one iterator per scan reports of the same snapshot.
func TestVerifyUnderWritesSeesOneSnapshot(t *testing.T) {
	bs := newBusyStore(t, 50, 7)
	bs.rounds(20, 100)
	snap := bs.s.Snapshot()
	defer snap.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 60; i++ { // bounded: the race detector slows Verify more than the rounds
			select {
			case <-stop:
				return
			default:
			}
			if err := bs.round(50); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 0 {
				if err := bs.s.db.Flush(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	var reps []Report
	for range 3 {
		rep, err := Verify(snap, 1)
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	close(stop)
	wg.Wait()
	snap.iterKeys = 0 // one iterator per scan, on the same snapshot
	want, err := Verify(snap, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Problems) != 0 || want.Postings != 2*20*100 || want.Accounts != 50 {
		t.Fatalf("one iterator: %+v", want)
	}
	for i, rep := range reps {
		if !slices.Equal(rep.Problems, want.Problems) || rep.Accounts != want.Accounts || rep.Postings != want.Postings ||
			rep.OutboxLegs != want.OutboxLegs {
			t.Fatalf("verify %d under writes: %+v, one iterator: %+v", i, rep, want)
		}
	}
	if rep, err := Verify(bs.s.Live(), 1); err != nil || len(rep.Problems) != 0 || rep.Postings <= want.Postings {
		t.Fatalf("the store after the writes: %+v %v", rep, err)
	}
}

// TestVerifyChunksReleaseZombies measures what a long Verify scan pins on disk while the
// store compacts under writes. The postings scan is paused every pause keys: a round commits,
// the memtable is flushed and the whole key space compacted (every table of the version the
// scan started on is replaced), then the scan goes on for another pause keys and the zombie
// bytes (tables out of the LSM that an iterator still holds) are sampled. One iterator for
// the whole scan holds every table it started on until it ends; iterators of
// Options.SnapshotIterKeysMax keys release them within one part.
func TestVerifyChunksReleaseZombies(t *testing.T) {
	const pause = 1000
	measure := func(iterKeys int) (zombieMax, diskMax, diskStart uint64) {
		// Whole tables: a round's postings go to the journal's end, and tables split by
		// stream (tableSpan) would leave the scanned ones in place, never zombies.
		bs := newBusyStoreOpts(t, 1000, Options{SnapshotIterKeysMax: iterKeys, wholeTables: true})
		bs.rounds(10, 1000)
		if err := bs.s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
		diskStart = bs.s.Stats().DiskBytes
		snap := bs.s.Snapshot()
		defer snap.Close()
		n := 0
		err := snap.ForEachPosting(func(ledger.Posting) error {
			n++
			switch n % (2 * pause) {
			case 0:
				if err := bs.round(1000); err != nil {
					return err
				}
				if err := bs.s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
					return err
				}
			case pause:
				st := bs.s.Stats()
				zombieMax, diskMax = max(zombieMax, st.ZombieTableBytes), max(diskMax, st.DiskBytes)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 10*pause {
			t.Fatalf("%d postings: too few to measure", n)
		}
		return zombieMax, diskMax, diskStart
	}
	oneZombies, oneDisk, oneStart := measure(-1)
	partZombies, partDisk, partStart := measure(500)
	t.Logf("one iterator:    zombie tables up to %d bytes, disk %d -> up to %d bytes", oneZombies, oneStart, oneDisk)
	t.Logf("500-key parts:   zombie tables up to %d bytes, disk %d -> up to %d bytes", partZombies, partStart, partDisk)
	if oneZombies < oneStart/4 {
		t.Fatalf("one iterator pinned %d bytes of a %d-byte store: the measurement does not see the pinning", oneZombies, oneStart)
	}
	if partZombies != 0 {
		t.Fatalf("parts of 500 keys still hold %d bytes of zombie tables %d keys after a compaction", partZombies, pause)
	}
}

// TestVerifyLargeStore measures Verify on a copy of the store in $LEDGER_VERIFY_STORE (made,
// say, by ledger-bench --data-dir), with one iterator per scan (as before) and with
// iterators of SnapshotIterKeysMaxDefault keys: first alone, then under a write load that
// forces compactions. The load writes again, with the same values, one key in 500 of the
// store (so Verify's answer cannot change), a 16th of the key space every 250 ms, flushes, and
// compacts that range: every table overlaps some key written, so the compactions rewrite all
// of them in turn, as
// ledgerd's own flushes do (a posting's key leads with its account, so a flush overlaps all
// of Lbase, and its compaction, after 32 flushes, rewrites Lbase). It samples the disk used
// and the zombie tables every 50 ms while Verify runs.
func TestVerifyLargeStore(t *testing.T) {
	src := os.Getenv("LEDGER_VERIFY_STORE")
	if src == "" {
		t.Skip("LEDGER_VERIFY_STORE names no store to measure")
	}
	for _, mode := range []struct {
		name     string
		iterKeys int
	}{{"one iterator per scan", -1}, {"64Ki-key iterators", 0}, {"one iterator per scan", -1}, {"64Ki-key iterators", 0}} {
		dir := filepath.Join(t.TempDir(), "db")
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{SnapshotIterKeysMax: mode.iterKeys})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
		quiet := verifyTimed(t, s, nil)
		loaded := verifyTimed(t, s, sampleKeys(t, s, 500))
		t.Logf("%s: alone %v; under load %v, disk %d MB -> up to %d MB, zombie tables up to %d MB (mean %.1f MB), snapshot-pinned %d MB",
			mode.name, quiet.took.Round(time.Millisecond), loaded.took.Round(time.Millisecond), loaded.diskStart>>20,
			loaded.diskMax>>20, loaded.zombieMax>>20, float64(loaded.zombieSum)/float64(max(loaded.samples, 1))/(1<<20), loaded.pinned>>20)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type verifyRun struct {
	took                                  time.Duration
	diskStart, diskMax, zombieMax, pinned uint64
	zombieSum, samples                    uint64 // for the mean
}

// sampleKeys copies every nth key of s with its value.
func sampleKeys(t *testing.T, s *Store, n int) [][2][]byte {
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var kvs [][2][]byte
	i := 0
	for ok := it.First(); ok; ok = it.Next() {
		if i++; i%n == 0 {
			v, err := it.ValueAndErr()
			if err != nil {
				t.Fatal(err)
			}
			kvs = append(kvs, [2][]byte{slices.Clone(it.Key()), slices.Clone(v)})
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return kvs
}

// verifyTimed runs Verify on a snapshot of s while, every 50 ms, it samples the disk and
// zombie tables and (with load) every 250 ms writes the next 16th of load's keys again,
// flushes and compacts their range.
func verifyTimed(t *testing.T, s *Store, load [][2][]byte) verifyRun {
	t.Helper()
	var run verifyRun
	start := s.Stats()
	run.diskStart = start.DiskBytes
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		snap := s.Snapshot()
		rep, err := Verify(snap, s.Shards())
		if err == nil && len(rep.Problems) > 0 {
			err = fmt.Errorf("problems: %v", rep.Problems[:min(3, len(rep.Problems))])
		}
		done <- errors.Join(err, snap.Close())
	}()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			run.took = time.Since(began)
			run.pinned = s.Stats().SnapshotPinnedBytes - start.SnapshotPinnedBytes
			return run
		case <-time.After(50 * time.Millisecond):
		}
		st := s.Stats()
		run.diskMax, run.zombieMax = max(run.diskMax, st.DiskBytes), max(run.zombieMax, st.ZombieTableBytes)
		run.zombieSum += st.ZombieTableBytes
		run.samples++
		if load == nil {
			continue
		}
		// Every 5 samples the next 16th of the key space: its sampled keys written again,
		// flushed, and compacted (every table in it rewritten).
		if i%5 != 4 {
			continue
		}
		part := load[(i/5%16)*len(load)/16 : (i/5%16+1)*len(load)/16]
		b := s.db.NewBatch()
		for _, kv := range part {
			_ = b.Set(kv[0], kv[1], nil)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Compact(t.Context(), part[0][0], append(slices.Clone(part[len(part)-1][0]), 0), false); err != nil {
			t.Fatal(err)
		}
	}
}
