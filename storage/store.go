// Package storage keeps the ledger in Pebble. It hides Pebble from the rest of the project:
// the shards hand it a round's ledger.Effects and get back only after the batch holding them
// is durable (one batch per round, committed with a synced WAL write; Pebble's commit pipeline
// shares one fsync among the shards that commit at the same time).
//
// # Key layout
//
// One key space, one byte of prefix, ids and timestamps big-endian so that keys sort
// numerically:
//
//	a <account id>                     account: user data, timestamp, ledger, code, flags, and
//	                                   for transit accounts the balances (debits pending/posted,
//	                                   credits pending/posted); a client account's balance is
//	                                   the balance after its latest posting
//	t <transfer id>                    transfer, as the client sent it, plus timestamp, state
//	                                   and (for a failed transfer) the refusal
//	j <shard> <timestamp>              time record: the shard's postings at that time (a
//	                                   transfer's debit and credit), each the movement on its
//	                                   account (transfer id, op, amount, held amount, split
//	                                   flag, day) and the account's balance after it, keyed by
//	                                   time so that every round appends (journal.go,
//	                                   journal_time.go)
//	j <shard> <timestamp> <account id> one posting (format 8, and postings moved from format 7)
//	i <account id> <last timestamp>    index page: the timestamps of up to PageEntriesMax of
//	                                   the account's postings, the last in the key
//	x <shard>                          the shard's paged mark: the clock up to which its
//	                                   postings are in index pages (later ones: its tail, in
//	                                   memory)
//	p <shard> <transfer id>            the transfer is pending on that shard (for recovery)
//	o <account> <shard> <transfer id> <kind>
//	                                   outbox: a credit leg to the account that the shard
//	                                   sent and has not seen answered (by account, so that the
//	                                   inflows on their way to one account are one range)
//	l <transfer id> <kind>             a credit leg the credit shard applied (or refused),
//	                                   with its result: a re-sent leg is answered from here;
//	                                   deleted when the sender, its outbox record gone, says
//	                                   the leg will not come again
//	c <shard>                          the shard's last timestamp
//	m shards                           the number of shards the store was made with
//	m format                           the key layout and record encoding version
//	e <log> <round>                    event stream: one commit's events in a writer's log
//	                                   (log = ledger shard, or PaymentLogBase + payment shard;
//	                                   rounds gapless per log from 1): a ledger round's
//	                                   references (transfer id, state, result; posting
//	                                   account, timestamp), a payment round's orders
//	E <first sequence>                 event stream index: the global sequences of one logged
//	                                   round (log, round, events, time; the time is the
//	                                   store's log clock, see logClock), written by the
//	                                   sequencer, unsynced, after the round is durable
//	L <log>                            the log's last round that has global sequences (a
//	                                   writer numbers its rounds after it too)
//	m events-horizon                   the oldest sequence retention kept
//
// (The payment layer's keys are in orders.go.) The event stream's design is in package
// events and docs/ARCHITECTURE.md.
//
// Values are a version byte and canonical unsigned varints (encoding.go), so the small
// numbers of a ledger take a byte or two; an account's 128-bit totals are LEB128 numbers of up
// to 128 bits, the same bytes as a varint below 2^64.
//
// # Durable reads
//
// Pebble makes a batch visible to readers before its WAL sync returns, so a read of the live
// store may see a round that a power cut would erase. What a client reads must be durable:
// DurableSnapshot takes a snapshot and then waits for a synced WAL record written after it,
// which makes everything the snapshot sees durable (the WAL is one sequence: a record is
// synced only with every record before it, and a WAL is synced before the next one starts).
// The shards read the live store (Live): what they read of other shards is in the WAL before
// their own round, so their durable round makes it durable too.
//
// A client account's record is written once, when it is opened; its balance travels with its
// postings, so a round writes no balance records for them (with many accounts that was about
// one record per transfer). Transit accounts are account records (ids from 2^63 up) without
// postings of their own, whose journal is the mirror of the split postings of their shard's
// accounts; their balances are written once per round.
package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
)

// Options configure a Store.
type Options struct {
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// Shards is the number of shards; a store keeps the number it was made with. 0 opens an
	// existing store with the number it has.
	Shards uint32
	// CacheBytes is the size of Pebble's block cache (0: 64 MiB).
	CacheBytes int64
	// ReadOnly opens an existing store without writing to it (for verifying a stopped store).
	ReadOnly bool
	// SnapshotIterKeysMax is the most keys (or seeks) one iterator of a snapshot serves in a
	// long read before it is closed and the next opened (0: SnapshotIterKeysMaxDefault;
	// negative: one iterator per scan, as before, for measurements).
	SnapshotIterKeysMax int
	// PostingTailMax is how many postings a shard indexes in memory before it writes them to
	// index pages (0: PostingTailMax; small values test the pages).
	PostingTailMax int
	// PagingAccountsPerRound, when set, is how many accounts' index pages a round writes
	// while a sealed generation is paged (0: paced by the new generation's postings; small
	// values test the paging).
	PagingAccountsPerRound int
	// BackgroundNice, from 1 to 19, is the nice value of the threads that run Pebble's flushes
	// and compactions, so that they take the cores the requests leave (Linux only; 0: the
	// process's priority; see BackgroundNiceDefault for its risk). Such a thread can hold one
	// of the Go scheduler's Ps while the kernel makes it wait: a process that sets it should
	// run more Ps than its cores (ledgerd's --extra-procs, package procs).
	BackgroundNice int
	// wholeTables (tests) leaves Pebble's tables unsplit by tableSpan, so that a compaction
	// rewrites every table its key range overlaps.
	wholeTables bool
}

// SnapshotIterKeysMaxDefault is how many keys (or seeks) one iterator of a snapshot serves
// in a long read (Verify's whole-store scan) before it is closed and another opened: an open
// iterator holds the version of the LSM it started on, so every table a compaction makes
// obsolete meanwhile stays on disk (a zombie, Stats.ZombieTableBytes) until it closes. The
// snapshot itself pins no table, only the older versions of keys written after it, which
// compactions keep (Stats.SnapshotPinnedBytes). 64Ki keys take some tens of milliseconds to
// read; opening an iterator costs microseconds.
const SnapshotIterKeysMaxDefault = 1 << 16

// Store is the ledger's Pebble database.
type Store struct {
	db             *pebble.DB
	fs             vfs.FS // the store's file system and directory, for Stats' disk usage
	dir            string
	shards         uint32
	stalls         *stalls
	readOnly       bool
	iterKeys       int // Options.SnapshotIterKeysMax, resolved (0: unbounded)
	pagingAccounts int // Options.PagingAccountsPerRound, resolved
	// upgradeFrom is the older format the store has (formatsUpgradable), until upgrade.
	upgradeFrom string
	tailMax     int            // Options.PostingTailMax, resolved
	logClock    logClock       // stamps every log round (LogRound.Time)
	tails       []*postingTail // per shard: its postings after its paged mark (journal.go)
	// reconMu serializes writes of reconciliation findings (record if absent, resolve).
	reconMu sync.Mutex
}

// ErrLocked: another process has the store open (a running ledgerd). Pebble locks the
// store's LOCK file for as long as it is open, read-only opens too.
var ErrLocked = errors.New("another process holds the store")

// lockHeld reports whether err is Pebble's failure to take the store's lock because another
// process holds it: fcntl's bare EAGAIN or EACCES. A LOCK file that cannot be created (no
// permission) fails with a *fs.PathError instead, which is not this.
func lockHeld(err error) bool {
	var errno syscall.Errno
	var pathErr *fs.PathError
	return errors.As(err, &errno) && (errno == syscall.EAGAIN || errno == syscall.EACCES) && !errors.As(err, &pathErr)
}

// ErrNoShardCount: asked to open a store with the number of shards it has, but it has none
// (a new or foreign directory).
var ErrNoShardCount = errors.New("storage: not a ledger store (no shard count); give the number of shards to make one")

// ErrNotAStore: the directory holds a store's files but no manifest: a copy cut off before
// its manifest (Pebble writes it after the tables). Opening would make a new, empty store
// among them.
var ErrNotAStore = errors.New("storage: the directory holds a store's files (tables, logs, options) but no MANIFEST: a partial copy, not opened, nothing written")

// pebbleFile matches the names of a store's own files other than its manifest.
var pebbleFile = regexp.MustCompile(`^([0-9]+\.(sst|log|blob)|OPTIONS-[0-9]+|marker\..*)$`)

// checkNotForeign refuses a directory that has a store's files and no manifest: Pebble would
// make a new store in it (a copy cut off before its manifest was copied would open as an
// empty ledger). Other files (a log an operator keeps there) do not count.
func checkNotForeign(fs vfs.FS, dir string) error {
	if fs == nil {
		fs = vfs.Default
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil // missing: a new store
	}
	partial := false
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") || n == "CURRENT" {
			return nil
		}
		partial = partial || pebbleFile.MatchString(n)
	}
	if partial {
		return fmt.Errorf("%w: %s", ErrNotAStore, dir)
	}
	return nil
}

// ErrShardsMismatch: the store was made with another number of shards.
var ErrShardsMismatch = errors.New("storage: the store was made with another number of shards")

const (
	cacheBytesDefault = 64 << 20
	// memTableBytes is the size of one memtable. Pebble takes a batch of more than half of
	// it (counting some 100 bytes a key more) as a flushable batch of its own instead of
	// inserting its keys into the memtable's skiplist, and flushes each such batch alone:
	// with postings keyed by account that was cheaper (8 MiB 234k/s, 64 MiB 184k/s, batch
	// 8190). With the journal keyed by time, a flush for every round of a few thousand
	// transfers cost more than the skiplist (row 1: 123 flushes and 367 tables for 1,000,000
	// transfers; at 16 MiB, 19% more transfers a second for 20% less CPU). 24 MiB keeps a
	// round of two requests of 8,190 in the skiplist too (four in flight: 528k -> 591k/s);
	// 32 MiB cost small writes (payments' vouchers, batch 100) more. bench/RESULTS.md,
	// session 14.
	memTableBytes = 24 << 20
)

// tableSpan keeps every sstable Pebble writes, flushed or compacted, to the keys of one kind
// (its prefix byte), and of one shard or log for the kinds that hold a stream per shard or log
// (streamKinds): a table ends where its first key's span ends (Pebble's SpanPolicyFunc).
//
// Most of what a round writes goes to the ends of streams that only grow: each shard's journal,
// the transfer records (ids the clients give, in the bench rising), each log's event records,
// the event index. Tables that hold the end of one stream and the end of another also span
// the first one's history between them, so each compaction of such a table into Lbase
// rewrote every Lbase table of that history: a flush's few kilobytes of event index and
// round records were merged into megabytes of older index, log and page tables each time.
// Logged compaction by compaction over 10,000,000 transfers at batch 8190 (10,000 accounts,
// one shard), that was 3.0 of the 5.1 GB compactions wrote; with a table per stream a
// stream's new tables overlap nothing below and move down without being rewritten. With the
// pages written in account order (tailGen.seal), flushes and compactions wrote 2.0 GB of
// sstables where they had written 6.7-8.3, for the 1.5 GB logged (bench/RESULTS.md, session
// 10). The price is more, smaller tables: a stream's tables keep the size its flushes gave
// them as they move down.
func tableSpan(start []byte) (pebble.SpanPolicy, []byte, error) {
	if len(start) == 0 || start[0] == 0xff {
		return pebble.SpanPolicy{}, nil, nil
	}
	// A start key of just the kind and an id is where the rest of a range deletion begins
	// once Pebble cut it at a span's end, not a record (those are longer): spanning one id
	// from there would cut the deletion into a table for every id up to 0xffff.
	if streamKinds[start[0]] && len(start) > 3 {
		if id := be.Uint16(start[1:3]); id != 0xffff {
			return pebble.SpanPolicy{}, be.AppendUint16([]byte{start[0]}, id+1), nil
		}
	}
	return pebble.SpanPolicy{}, []byte{start[0] + 1}, nil
}

// streamKinds: the kinds whose keys start with a 2-byte shard or log after the prefix, each
// shard's or log's keys a stream of its own (journal, index pages, event log, pending
// transfers, active orders).
var streamKinds = [256]bool{prefixJournal: true, prefixGenPage: true, prefixEventLog: true, prefixPending: true, prefixActive: true}

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Shards > ledger.ShardsMax {
		return nil, fmt.Errorf("storage: shards must be 1 to %d, not %d", ledger.ShardsMax, opts.Shards)
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = cacheBytesDefault
	}
	if err := CheckBackgroundNice(opts.BackgroundNice); err != nil {
		return nil, err
	}
	if err := checkNotForeign(opts.FS, dir); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	fs := withBackgroundNice(opts.FS, opts.BackgroundNice)
	if fs == nil {
		fs = vfs.Default
	}
	po := &pebble.Options{FS: tableWritesFS{FS: fs}, Cache: cache, Logger: slogLogger{}, ReadOnly: opts.ReadOnly,
		MemTableSize:                memTableBytes,
		MemTableStopWritesThreshold: 8,
		// A write-heavy store whose postings are keyed by account, so every flush overlaps
		// all of Lbase: let L0 gather many sublevels before compacting them into Lbase, so
		// that each rewrite of Lbase takes in more new data, and make Lbase large. Against 8
		// and 64, ledger-bench measured write amplification 3.4 -> 3.1, uniform 295k -> 340k
		// transfers/s and 1M accounts 228k -> 266k/s (medians, alternating runs; recovery of
		// 1M accounts unchanged at 2.7 s). Reads are point look-ups with bloom filters and
		// one sorted iterator per round, which extra sublevels cost little. (Measured again
		// once postings were a journal and tables split by tableSpan, 10M transfers: 4, 8
		// and 32 wrote the same bytes and their rates were within the runs' noise.)
		L0CompactionThreshold: 32,
		L0StopWritesThreshold: 256,
		LBaseMaxBytes:         512 << 20,
	}
	if !opts.wholeTables {
		po.Experimental.SpanPolicyFunc = tableSpan
	}
	for i := range po.Levels {
		// Bloom filters make the look-up of a new transfer id (absent, the common case) cheap.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		// The CPU, not the disk, bounds throughput: records are small binary values that
		// compress little, so none.
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	st := &stalls{}
	listener := st.listener()
	po.EventListener = &listener
	po.EnsureDefaults()
	db, err := pebble.Open(dir, po)
	if lockHeld(err) {
		return nil, fmt.Errorf("storage: open %s: %w (its LOCK file: %w)", dir, ErrLocked, err)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	s := &Store{db: db, fs: po.FS, dir: dir, shards: opts.Shards, stalls: st, readOnly: opts.ReadOnly,
		iterKeys: max(opts.SnapshotIterKeysMax, 0)}
	if opts.SnapshotIterKeysMax == 0 {
		s.iterKeys = SnapshotIterKeysMaxDefault
	}
	if s.tailMax = opts.PostingTailMax; s.tailMax <= 0 {
		s.tailMax = PostingTailMax
	}
	s.tailMax = min(s.tailMax, postingTailMaxMax)
	s.pagingAccounts = max(opts.PagingAccountsPerRound, 0)
	if err := s.checkFormat(opts.ReadOnly); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.checkShards(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.upgrade(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.loadTails(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// formatVersion names the key layout and record encodings; a store of another format is
// refused rather than misread. Format 10: index pages keyed by their generation, with each
// account's latest paged posting (journal.go); opening a format 8 or 9 store for writing
// moves its pages (upgrade). Format 9: the journal's records are time records, one a
// shard's timestamp with all its postings at that time (journal_time.go); format 8's records
// of one posting stay readable, so a format-8 store opened for writing only becomes format 9,
// which format-8 builds refuse (they would not read time records). Format 8: postings in
// the journal, keyed by time, and index pages (journal.go), where format 7 and older had
// them keyed by account (h account timestamp); opening an older store for writing moves its
// postings (upgrade). Format 3: 128-bit account totals, the outbox keyed by credit account,
// failed and in-flight transfers, refusable legs. Format 4: transfers indexed by business
// id; payment orders. Format 5: the event stream (e, E, L, m events-horizon).
// Format 6: payment log records compressed (paymentLogCompressed). Format 7: accounting
// days: a posting and an outbox leg end with their day (absent in older records, which read
// as day 0), and the day keys (d, w, z, n). A store of format 4 to 6 opened for writing
// becomes format 7 (its keys and records mean the same, and this build reads them all), so
// that an older build refuses it: one would commit rounds without their event log records
// (4), cannot read compressed log records (5), or would misread a posting that ends with
// its day (4 to 6).
const formatVersion = "ledger-format-10"

// formatsUpgradable are the formats that opening for writing upgrades to formatVersion.
var formatsUpgradable = []string{"ledger-format-4", "ledger-format-5", "ledger-format-6", "ledger-format-7", "ledger-format-8", "ledger-format-9"}

// ErrFormat: the store was written by a build with another key layout or record encoding.
var ErrFormat = errors.New("storage: the store has another format")

func (s *Store) checkFormat(readOnly bool) error {
	key := []byte{prefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		if s.shards == 0 || readOnly {
			return ErrNoShardCount
		}
		return s.db.Set(key, []byte(formatVersion), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("storage: read format: %w", err)
	}
	defer closer.Close()
	if slices.Contains(formatsUpgradable, string(v)) {
		s.upgradeFrom = string(v) // after checkShards: upgrade
		return nil
	}
	if string(v) != formatVersion {
		return fmt.Errorf("%w: it has %q, this build reads only %q (and upgrades %s); open it with the build that wrote it",
			ErrFormat, v, formatVersion, strings.Join(formatsUpgradable, ", "))
	}
	return nil
}

func (s *Store) checkShards() error {
	key := []byte{prefixMeta, 's', 'h', 'a', 'r', 'd', 's'}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		if s.shards == 0 || s.readOnly {
			return ErrNoShardCount
		}
		return s.db.Set(key, []byte(strconv.Itoa(int(s.shards))), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("storage: read shard count: %w", err)
	}
	defer closer.Close()
	if s.shards == 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n <= 0 || n > ledger.ShardsMax {
			return fmt.Errorf("storage: bad shard count %q", v)
		}
		s.shards = uint32(n)
		return nil
	}
	if string(v) != strconv.Itoa(int(s.shards)) {
		return fmt.Errorf("%w: it has %s, asked for %d", ErrShardsMismatch, v, s.shards)
	}
	return nil
}

// Shards is the number of shards of the store.
func (s *Store) Shards() uint32 { return s.shards }

// Close flushes nothing more (every round was synced) and closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Reader reads the store: either the live store (Live) or a consistent snapshot of it
// (Snapshot, DurableSnapshot).
type Reader struct {
	r        pebble.Reader
	s        *Store
	iterKeys int         // on a snapshot, the most keys one iterator reads in a scan (0: unbounded)
	views    []shardView // per shard, once read (journal.go)
}

// Snapshot takes a consistent view of the store, which may include rounds whose commit has not
// returned yet (not yet durable); Close it when done.
func (s *Store) Snapshot() *Reader { return &Reader{r: s.db.NewSnapshot(), s: s, iterKeys: s.iterKeys} }

// DurableSnapshot takes a consistent view of the store in which everything is durable: a
// snapshot, then a synced WAL record written after it (see "Durable reads" above). It costs
// one WAL sync, shared with whatever else commits at the same time. Close it when done.
func (s *Store) DurableSnapshot() (*Reader, error) {
	snap := s.db.NewSnapshot()
	if durableReadHook != nil {
		durableReadHook()
	}
	if !s.readOnly {
		if err := pebbleWrite(func() error { return s.db.LogData(nil, pebble.Sync) }); err != nil {
			_ = snap.Close()
			return nil, fmt.Errorf("storage: sync for a durable read: %w", err)
		}
	}
	return &Reader{r: snap, s: s, iterKeys: s.iterKeys}, nil
}

// durableReadHook, when set (by a test), runs between a durable snapshot's two steps: what
// commits there must not be in the snapshot unless it is durable.
var durableReadHook func()

// Live reads the store as it is at each read, including rounds not yet durable. Only the
// shards read it, for what they must know before their own round, which commits after it.
func (s *Store) Live() *Reader { return &Reader{r: s.db, s: s} }

// Close releases a snapshot (a no-op for Live).
func (v *Reader) Close() error {
	if snap, ok := v.r.(*pebble.Snapshot); ok {
		return snap.Close()
	}
	return nil
}

// Writer commits one shard's rounds. It reuses its batches and buffers. One goroutine owns
// it; Finish alone may run on another, in the order of Prepare.
type Writer struct {
	db    *pebble.DB
	shard uint32
	// batch is the batch being written; the other one (writerBatches) commits or is free.
	batch    *pebble.Batch
	free     chan *pebble.Batch // the batches no round holds
	key, val []byte
	log      logCursor
	tail     *postingTail
	tailMax  int
	opened   int // accounts this writer opened (the tail's first generation is sized for them)
	// pagingAccounts is Options.PagingAccountsPerRound, resolved.
	pagingAccounts int
	failed         atomic.Pointer[error] // the commit that failed: the writer takes no more
	order          keyOrder              // Commit's: the order of its records
	mark           []byte                // page's: the paged mark's record
	quiet          []latestAt            // page's: the latest paged postings (k) the round writes
	// inspect, when set (tests), is shown each round's batch before it commits.
	inspect func(*pebble.Batch)
	// groupGate, when set (tests), holds each sealed generation's grouping until it is closed.
	groupGate <-chan struct{}
	// tailAsyncPostings and tailAsyncAccounts: when a round's postings go into the tail on a
	// goroutine of their own (addToTail; tests set them lower).
	tailAsyncPostings, tailAsyncAccounts int
	handedOff                            int // rounds whose postings addToTail handed off (tests)
}

// Writer returns the writer for a shard.
func (s *Store) Writer(shard uint32) *Writer {
	free := make(chan *pebble.Batch, writerBatches)
	for range writerBatches - 1 {
		free <- s.db.NewBatch()
	}
	return &Writer{db: s.db, shard: shard, batch: s.db.NewBatch(), free: free, key: make([]byte, 0, 32),
		val: make([]byte, 0, 128), log: logCursor{log: uint16(shard), clock: &s.logClock}, tail: s.tails[shard],
		tailMax: s.tailMax, pagingAccounts: s.pagingAccounts, tailAsyncPostings: tailAsyncPostingsMin,
		tailAsyncAccounts: tailAsyncAccountsMin}
}

// writerBatches is how many batches a writer has: the one being written and one committing
// (Prepare while the round before it is in Finish).
const writerBatches = 2

// Commit writes a round's effects (frozen: see ledger.Effects.Freeze), its event log record
// (when it has events; LastRound names it) and the shard's clock as one batch and returns
// when the batch is durable (synced WAL): Prepare, then Finish.
func (w *Writer) Commit(fx *ledger.Effects, clock uint64) error {
	p, err := w.Prepare(fx, clock)
	if err != nil {
		return err
	}
	return w.Finish(p)
}

// Prepared is a round written to its batch and not committed yet (Writer.Prepare).
type Prepared struct {
	b     *pebble.Batch
	round LogRound
}

// Round is what the round writes to the writer's event log (Events 0: nothing).
func (p *Prepared) Round() LogRound { return p.round }

// fail records the writer's first failure and answers it.
func (w *Writer) fail(err error) error {
	err = fmt.Errorf("storage: commit shard %d: %w", w.shard, err)
	if w.failed.CompareAndSwap(nil, &err) {
		return err
	}
	return *w.failed.Load()
}

// Prepare writes a round (Commit) to a batch and takes its postings into the shard's tail, and
// Finish commits that batch: the next round is prepared while this one commits. Rounds are
// finished in the order they were prepared, each once; at most writerBatches are prepared and
// not finished (Prepare waits for a Finish). The tail holds a round's postings from Prepare:
// a reader sees them only once its snapshot has the round's clock, which commits with them.
func (w *Writer) Prepare(fx *ledger.Effects, clock uint64) (*Prepared, error) {
	if !fx.IsFrozen() {
		panic("storage: commit of a round whose accounts were not frozen")
	}
	if err := w.failed.Load(); err != nil {
		// A failed commit's postings are in the tail: no later round may commit after it.
		return nil, *err
	}
	if w.free == nil {
		return nil, errWriterClosed
	}
	if w.batch == nil {
		w.batch = <-w.free
	}
	if err := w.log.load(w.db); err != nil {
		// Sticky as every failure: a round sealed after this one may be prepared already,
		// and its records (account balances among them) assume this one's.
		return nil, w.fail(err)
	}
	// A large round gets a batch allocated at its size at once: Pebble keeps no batch of more
	// than 1 MiB for reuse, and growing one by doubling allocates and copies it many times.
	if n := batchBytes(fx); n > batchReuseBytesMax {
		_ = w.batch.Close()
		w.batch = w.db.NewBatchWithSize(n)
	}
	b := w.batch
	// The writer alone appends to its tail: its latest posting needs no lock.
	after := w.tail.cur.after
	if n := len(w.tail.cur.ts); n > 0 {
		after = w.tail.cur.ts[n-1]
	}
	for i := range fx.Postings {
		p := &fx.Postings[i]
		if p.Timestamp > clock || p.Timestamp <= after {
			// The index would lose it (the tail holds postings after the paged mark up to the
			// clock in the reader's snapshot), or its time record would replace one an
			// earlier round wrote.
			panic(fmt.Sprintf("storage: INVARIANT: posting of account %d at %d, outside the round's times (%d, %d]",
				p.Account, p.Timestamp, after, clock))
		}
		// In time order (so that the last is the latest, for the next round's check and the
		// tail's walks), and an account once a time (a time record holds one posting each).
		for j := i - 1; j >= 0 && fx.Postings[j].Timestamp >= p.Timestamp; j-- {
			if q := &fx.Postings[j]; q.Timestamp > p.Timestamp || q.Account == p.Account {
				panic(fmt.Sprintf("storage: INVARIANT: posting of account %d at %d after account %d's at %d",
					p.Account, p.Timestamp, q.Account, q.Timestamp))
			}
		}
	}
	// The batch's records go in key order (their prefixes' order, each family sorted, a key
	// written twice in its order): Pebble sorts a large batch's records (a flushable batch)
	// or inserts them into the memtable's skiplist, both several times faster on keys that
	// come in order. The order is only speed: Pebble orders them anyway.
	for _, r := range w.order.accounts(fx) {
		if int(r) < len(fx.Opened) {
			w.set(idKey(w.key, prefixAccount, fx.Opened[r].ID), encodeAccount(w.val, &fx.Opened[r]))
		} else {
			a := &fx.Frozen[int(r)-len(fx.Opened)]
			w.set(idKey(w.key, prefixAccount, a.ID), encodeAccount(w.val, a))
		}
	}
	// A hold is written as pending once (when it is made, or when its in-flight leg is
	// accepted) and leaves that state once (posted, voided or expired); an in-flight or
	// failed hold never had the index key. A hold leaving its pending state is a record
	// written again: its biz id is indexed already.
	for _, i := range w.order.bizIDs(fx.Transfers) {
		t := &fx.Transfers[i]
		w.set(be.AppendUint64(bizKey(w.key, prefixTransferBiz, t.BizID), t.ID), nil)
	}
	w.set(clockKey(w.key, w.shard), be.AppendUint64(w.val[:0], clock))
	for _, d := range fx.Days {
		w.set(shardDayKey(w.key, w.shard), be.AppendUint32(w.val[:0], uint32(d.Day)))
	}
	var lr LogRound
	if n := EventCount(fx); n > 0 {
		lr = w.log.next(n, clock)
		w.set(eventLogKey(w.key, lr.Log, lr.Round), appendLedgerLog(w.val, fx, lr.Time))
	}
	w.opened += len(fx.Opened)
	w.tail.makeRoom(len(fx.Postings), w.opened, w.tailMax)
	// The round's postings are in the tail before they are durable: a reader sees them only
	// once its snapshot has the round's clock, which commits with them. A large round's go in
	// on a goroutine of their own while this one writes the records that do not read the
	// tail; its pages wait for them.
	tailed := w.addToTail(fx.Postings)
	var paged bool
	var mark []byte
	pageNow := func() (err error) {
		paged, mark, err = w.page(clock) // its pages (`g`, `k`) now, its mark (`x`) last
		if err != nil {
			b.Reset()
			return w.fail(err)
		}
		return nil
	}
	if tailed == nil { // in key order, the pages before the journal's records
		if err := pageNow(); err != nil {
			return nil, err
		}
	}
	// One time record a timestamp (journal_time.go).
	idx := w.order.postings(fx.Postings)
	for n := 0; n < len(idx); {
		ts, m := fx.Postings[idx[n]].Timestamp, n+1
		for m < len(idx) && fx.Postings[idx[m]].Timestamp == ts {
			m++
		}
		w.set(journalTimeKey(w.key, w.shard, ts), appendTimeRecord(w.val[:0], fx.Postings, idx[n:m]))
		n = m
	}
	if tailed == nil {
		w.writeLatestPaged()
	}
	for _, r := range w.order.legsDone(fx) {
		if int(r) < len(fx.LegsDone) {
			w.set(legDoneKey(w.key, fx.LegsDone[r].LegKey), append(w.val[:0], byte(fx.LegsDone[r].Result)))
		} else {
			// A plain delete: a leg delivered twice had its record set twice.
			w.del(legDoneKey(w.key, fx.LegsForgotten[int(r)-len(fx.LegsDone)]))
		}
	}
	for _, r := range w.order.outbox(fx) {
		if int(r) < len(fx.LegsOut) {
			w.set(outboxKey(w.key, &fx.LegsOut[r]), encodeLeg(w.val, &fx.LegsOut[r]))
		} else {
			w.singleDel(outboxKey(w.key, &fx.OutboxDone[int(r)-len(fx.LegsOut)]))
		}
	}
	for _, i := range w.order.pending(fx.Transfers) {
		t := &fx.Transfers[i]
		if t.State == ledger.StatePending {
			w.set(pendingKey(w.key, w.shard, t.ID), nil)
		} else {
			w.singleDel(pendingKey(w.key, w.shard, t.ID))
		}
	}
	for _, i := range w.order.transfers(fx.Transfers) {
		t := &fx.Transfers[i]
		w.set(idKey(w.key, prefixTransfer, t.ID), encodeTransfer(w.val, t))
	}
	for _, d := range fx.Days {
		w.set(dayStartKey(w.key, d.Day, w.shard), be.AppendUint64(w.val[:0], d.Clock))
	}
	if tailed != nil { // the pages last: the only records out of key order, a few a round
		<-tailed
		if err := pageNow(); err != nil {
			return nil, err
		}
		w.writeLatestPaged()
	}
	if mark != nil {
		w.mark = mark // page's own buffer: w.set keeps its value's for the next records
		w.set(pagedKey(w.key, w.shard), append(w.val[:0], mark...))
	}
	if w.inspect != nil {
		w.inspect(b)
	}
	w.log.reserve(lr)
	if paged {
		// The generation just paged becomes the one paged last. A reader whose snapshot
		// predates this round's mark finds it there by its end; one whose snapshot predates
		// the mark before it reads its tail from the journal, as it would once this round
		// is durable.
		w.tail.retire()
	}
	w.batch = nil
	return &Prepared{b: b, round: lr}, nil
}

// A round's postings go into the tail on a goroutine of their own (addToTail) when they are
// at least tailAsyncPostingsMin and the tail's current generation holds at least
// tailAsyncAccountsMin accounts: then its map of them is larger than a core's caches, and
// nearly every posting's look-up there waits on memory (a round of 5,120 transfers among
// 1,000,000 accounts: some 1.5 of its 3.5 ms of Prepare). Among fewer accounts the look-ups
// hit the caches, and the hand-off and the core it takes from the book cost more than they
// save (batch 8190 over 10,000 accounts was 11% slower with every large round handed off).
const (
	tailAsyncPostingsMin = 2048
	tailAsyncAccountsMin = 1 << 16
)

// addToTail adds ps to the tail: at once (nil), or, for a large round among many accounts
// (tailAsyncAccountsMin), on a goroutine of its own, which closes the channel answered when
// done. The writer touches the tail no more until then; readers take the tail's lock as ever.
func (w *Writer) addToTail(ps []ledger.Posting) chan struct{} {
	if len(ps) < w.tailAsyncPostings || len(w.tail.cur.accounts) < w.tailAsyncAccounts {
		w.tail.addRound(ps)
		return nil
	}
	w.handedOff++
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.tail.addRound(ps)
	}()
	return done
}

// Finish commits p's batch and returns when it is durable. After a failed commit the writer
// commits nothing more: every later round fails with the first error.
func (w *Writer) Finish(p *Prepared) error {
	b := p.b
	defer func() {
		b.Reset()
		w.free <- b
	}()
	if err := w.failed.Load(); err != nil {
		return *err
	}
	if err := commitSynced(b); err != nil {
		return w.fail(err)
	}
	w.log.done(p.round)
	return nil
}

// ErrWrite: a commit failed to write or sync the WAL. The store can take no more writes; the
// process must stop and recover (what the failed commit wrote may or may not be durable).
var ErrWrite = errors.New("storage: write failed")

// commitSynced commits b, synced.
func commitSynced(b *pebble.Batch) error {
	return pebbleWrite(func() error { return b.Commit(pebble.Sync) })
}

// pebbleWrite runs a write to Pebble's WAL. Pebble treats a failed WAL write or sync as fatal
// and calls its logger's Fatalf, which panics here (slogLogger); that panic becomes ErrWrite,
// and every later write fails the same way (Pebble's WAL error is sticky).
func pebbleWrite(write func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%w: %s", ErrWrite, string(f))
		}
	}()
	return write()
}

// pebbleFatal is what slogLogger.Fatalf panics with.
type pebbleFatal string

// batchReuseBytesMax is the largest batch Pebble keeps for reuse after Reset.
const batchReuseBytesMax = 1 << 20

// batchBytes estimates a round's batch from its record counts (records average under 64
// bytes with their batch headers; ledger-bench logs 137 WAL bytes for a transfer's 3).
func batchBytes(fx *ledger.Effects) int {
	records := len(fx.Opened) + len(fx.Frozen) + 2*len(fx.Transfers) + len(fx.Postings) + len(fx.LegsOut) +
		len(fx.OutboxDone) + len(fx.LegsDone) + len(fx.LegsForgotten) + 2*len(fx.Days) + 2
	return 64*records + 8*EventCount(fx) // and the event log record's references
}

func (w *Writer) set(k, v []byte) {
	if err := w.batch.Set(k, v, nil); err != nil {
		panic(err) // only on a closed batch: a bug
	}
	// Keep what the encoders grew for the next record; an index entry's nil value is not one.
	w.key = k
	if cap(v) > 0 {
		w.val = v
	}
}

func (w *Writer) del(k []byte) {
	if err := w.batch.Delete(k, nil); err != nil {
		panic(err) // only on a closed batch: a bug
	}
}

// singleDel deletes a key that was set exactly once (an outbox or pending record): when the
// deletion meets the value in a compaction, both vanish instead of leaving a tombstone.
func (w *Writer) singleDel(k []byte) {
	if err := w.batch.SingleDelete(k, nil); err != nil {
		panic(err)
	}
	w.key = k
}

// Close releases the writer's batches, after the last Finish; a closed writer commits nothing. Closing twice is a no-op
// (a batch closed twice goes back to Pebble's pool twice, and two writers would share it).
func (w *Writer) Close() error {
	if w.free == nil {
		return nil
	}
	var err error
	if w.batch != nil {
		err = w.batch.Close()
		w.batch = nil
	}
	for {
		select {
		case b := <-w.free:
			err = errors.Join(err, b.Close())
		default:
			w.free = nil
			return err
		}
	}
}

// errWriterClosed: Commit on a closed writer.
var errWriterClosed = errors.New("storage: the writer is closed")

func (v *Reader) get(key []byte, decode func(v []byte) error) (bool, error) {
	val, closer, err := v.r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: get %x: %w", key, err)
	}
	defer closer.Close()
	return true, decode(val)
}

// Account reads an account with its current balance.
func (v *Reader) Account(id uint64) (a ledger.Account, found bool, err error) {
	err = v.Accounts([]uint64{id}, func(got ledger.Account) { a, found = got, true })
	return a, found, err
}

// AccountInfo reads what never changes of an account (its record only, not its balance).
// AccountFixed reads what never changes of an account (id, ledger, code, flags, user data,
// timestamp), without its balance (zero), which only Account and Accounts compute.
func (v *Reader) AccountFixed(id uint64) (a ledger.Account, found bool, err error) {
	var key [accountKeyLen]byte
	k := idKey(key[:0], prefixAccount, id)
	found, err = v.get(k, func(val []byte) (derr error) { a, derr = decodeAccount(k, val); return derr })
	a.Balance = ledger.Balance{}
	return a, found, err
}

func (v *Reader) AccountInfo(id uint64) (info ledger.AccountInfo, found bool, err error) {
	var key [accountKeyLen]byte
	k := idKey(key[:0], prefixAccount, id)
	found, err = v.get(k, func(val []byte) error {
		a, err := decodeAccount(k, val)
		info = a.Info()
		return err
	})
	return info, found, err
}

// Accounts reads many accounts, in the order of ids, and calls fn for each one found. One
// cursor over the postings serves them all: making iterators costs more than the seeks that
// find an account's latest posting.
func (v *Reader) Accounts(ids []uint64, fn func(ledger.Account)) (err error) {
	var c *postingCursor
	defer func() {
		if c != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	var key [accountKeyLen]byte
	for _, id := range ids {
		var a ledger.Account
		k := idKey(key[:0], prefixAccount, id)
		found, err := v.get(k, func(val []byte) (derr error) { a, derr = decodeAccount(k, val); return derr })
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if c == nil {
			c = v.postingCursor()
		}
		if err := c.balance(&a); err != nil {
			return err
		}
		fn(a)
	}
	return nil
}

// Transfer reads a transfer.
func (v *Reader) Transfer(id uint64) (t ledger.Transfer, found bool, err error) {
	var key [accountKeyLen]byte
	k := idKey(key[:0], prefixTransfer, id)
	found, err = v.get(k, func(val []byte) error { t, err = decodeTransfer(k, val); return err })
	return t, found, err
}

// Transfers looks up many transfers at once and calls fn for each one found. It sorts ids in
// place and walks one iterator forward through them, which costs much less than a Get per
// id when ids come in runs (as clients allocate them).
func (v *Reader) Transfers(ids []uint64, fn func(ledger.Transfer)) error {
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	lo := idKey(nil, prefixTransfer, ids[0])
	hi := idKey(nil, prefixTransfer, ids[len(ids)-1])
	hi = append(hi, 0) // just past the last id
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: iterate: %w", err)
	}
	var key [accountKeyLen]byte
	for _, id := range ids {
		k := idKey(key[:0], prefixTransfer, id)
		if !it.SeekGE(k) || !bytes.Equal(it.Key(), k) {
			continue
		}
		val, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("storage: read transfer %d: %w", id, err)
		}
		t, err := decodeTransfer(k, val)
		if err != nil {
			_ = it.Close()
			return err
		}
		fn(t)
	}
	return it.Close()
}

// LegResult reads what the credit shard answered to a leg, if it has seen it.
func (v *Reader) LegResult(k ledger.LegKey) (r ledger.TransferResult, found bool, err error) {
	var key [legDoneKeyLen]byte
	found, err = v.get(legDoneKey(key[:0], k), func(val []byte) error {
		if len(val) != 1 {
			return fmt.Errorf("storage: leg record %+v: %d bytes", k, len(val))
		}
		r = ledger.TransferResult(val[0])
		return nil
	})
	return r, found, err
}

// Clock reads a shard's last timestamp.
func (v *Reader) Clock(shard uint32) (uint64, error) {
	var key [3]byte
	var c uint64
	_, err := v.get(clockKey(key[:0], shard), func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: clock of shard %d: %d bytes", shard, len(val))
		}
		c = be.Uint64(val)
		return nil
	})
	return c, err
}

// scan calls fn for every key in [lower, upper). On a snapshot it reads at most
// Options.SnapshotIterKeysMax keys with one iterator, then opens the next at the key after (before)
// the last: the view is the snapshot's throughout, and no iterator pins the store's tables
// for a whole long scan (renewingIter says why).
func (v *Reader) scan(lower, upper []byte, reverse bool, fn func(k, val []byte) (more bool, err error)) error {
	for {
		resume, err := v.scanPart(lower, upper, reverse, fn)
		if err != nil || resume == nil {
			return err
		}
		if reverse {
			upper = resume
		} else {
			lower = resume
		}
	}
}

// scanPart is one iterator's part of scan: it answers the bound to resume from (nil: done).
func (v *Reader) scanPart(lower, upper []byte, reverse bool, fn func(k, val []byte) (more bool, err error)) (resume []byte, err error) {
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	valid := it.First
	next := it.Next
	if reverse {
		valid, next = it.Last, it.Prev
	}
	keysMax := v.iterKeysMax()
	n := 0
	for ok := valid(); ok; ok = next() {
		val, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("storage: iterate: %w", err)
		}
		more, err := fn(it.Key(), val)
		if err != nil || !more {
			_ = it.Close()
			return nil, err
		}
		if n++; n == keysMax {
			// Forward: the next key up is the last one with a zero byte appended;
			// backward: the upper bound is exclusive, the last key itself.
			resume = append(make([]byte, 0, len(it.Key())+1), it.Key()...)
			if !reverse {
				resume = append(resume, 0)
			}
			return resume, it.Close()
		}
	}
	return nil, it.Close()
}

// iterKeysMax is how many keys one iterator of v reads in a long scan; 0: unbounded (the
// live store: a new iterator would see later writes).
func (v *Reader) iterKeysMax() int {
	if _, snap := v.r.(*pebble.Snapshot); snap {
		return v.iterKeys
	}
	return 0
}

// renewingIter is an iterator for seeks (SeekGE, SeekLT), closed and opened again after
// iterKeysMax uses on a snapshot, for the reason SnapshotIterKeysMaxDefault gives.
type renewingIter struct {
	v            *Reader
	lower, upper []byte
	it           *pebble.Iterator
	uses         int
}

func (v *Reader) renewingIter(lower, upper []byte) *renewingIter {
	return &renewingIter{v: v, lower: lower, upper: upper}
}

// iter is the iterator for the next seek.
func (r *renewingIter) iter() (*pebble.Iterator, error) {
	if keysMax := r.v.iterKeysMax(); r.it != nil && keysMax > 0 && r.uses >= keysMax {
		err := r.it.Close()
		r.it = nil
		if err != nil {
			return nil, fmt.Errorf("storage: iterate: %w", err)
		}
	}
	if r.it == nil {
		it, err := r.v.r.NewIter(&pebble.IterOptions{LowerBound: r.lower, UpperBound: r.upper})
		if err != nil {
			return nil, fmt.Errorf("storage: iterate: %w", err)
		}
		r.it, r.uses = it, 0
	}
	r.uses++
	return r.it, nil
}

func (r *renewingIter) Close() error {
	if r.it == nil {
		return nil
	}
	err := r.it.Close()
	r.it = nil
	return err
}

func prefixBounds(prefix ...byte) ([]byte, []byte) {
	upper := append([]byte(nil), prefix...)
	upper[len(upper)-1]++
	return prefix, upper
}

// ForEachAccount calls fn for every stored account with its balance, transit accounts
// included.
func (v *Reader) ForEachAccount(fn func(ledger.Account) error) error {
	lo, hi := prefixBounds(prefixAccount)
	c := v.postingCursor()
	err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		a, err := decodeAccount(k, val)
		if err == nil {
			err = c.balance(&a)
		}
		if err != nil {
			return false, err
		}
		return true, fn(a)
	})
	return errors.Join(err, c.Close())
}

// ForEachTransitAccount calls fn for every transit account.
func (v *Reader) ForEachTransitAccount(fn func(ledger.Account) error) error {
	_, hi := prefixBounds(prefixAccount)
	return v.scan(idKey(nil, prefixAccount, ledger.TransitIDMin), hi, false, func(k, val []byte) (bool, error) {
		a, err := decodeAccount(k, val)
		if err != nil {
			return false, err
		}
		return true, fn(a)
	})
}

// ForEachPending calls fn for every transfer pending on a shard.
func (v *Reader) ForEachPending(shard uint32, fn func(ledger.Transfer) error) error {
	lo := pendingKey(nil, shard, 0)[:3]
	hi := pendingKey(nil, shard+1, 0)[:3]
	return v.scan(lo, hi, false, func(k, _ []byte) (bool, error) {
		if len(k) != pendingKeyLen {
			return false, fmt.Errorf("storage: pending record %x: bad key", k)
		}
		t, found, err := v.Transfer(be.Uint64(k[3:]))
		if err != nil {
			return false, err
		}
		if !found || t.State != ledger.StatePending {
			return false, fmt.Errorf("storage: pending record %x names no pending transfer", k)
		}
		return true, fn(t)
	})
}

// ForEachOutboxLeg calls fn for every unanswered leg of every shard (Leg.From is its shard).
func (v *Reader) ForEachOutboxLeg(fn func(ledger.Leg) error) error {
	lo, hi := prefixBounds(prefixOutbox)
	return v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		l, err := decodeLeg(k, val)
		if err != nil {
			return false, err
		}
		return true, fn(l)
	})
}

// InflowsInTransit adds to sums[id], for each account id in sums, the posted inflows whose
// debit side is durable and whose credit leg the account's shard has not booked yet: a hot
// account's buffered inflows (and any other posted inflow between its two legs). Read it on
// a snapshot together with the accounts: one consistent cut of all shards counts each such
// transfer either here or in the account's balance, never in both. It reads only the outbox
// legs to those accounts.
func (v *Reader) InflowsInTransit(sums map[uint64]ledger.Uint128) error {
	for id := range sums {
		lo := idKey(nil, prefixOutbox, id)
		hi := idKey(nil, prefixOutbox, id+1)
		if id == ^uint64(0) {
			hi = []byte{prefixOutbox + 1}
		}
		err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
			l, err := decodeLeg(k, val)
			if err != nil || l.Kind != ledger.LegCreditPost && l.Kind != ledger.LegCreditPostHeld {
				return err == nil, err
			}
			// The credit shard records every leg it books, and deletes the record only
			// after the sender's outbox record is gone.
			if _, booked, err := v.LegResult(l.LegKey); err != nil || booked {
				return err == nil, err
			}
			sum, ok := sums[id].Add64(l.Amount)
			if !ok {
				return false, fmt.Errorf("storage: inflows to account %d overflow", id)
			}
			sums[id] = sum
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ForEachPosting calls fn for every posting in the journal, shard by shard, in the order they were
// written.
func (v *Reader) ForEachPosting(fn func(ledger.Posting) error) error {
	lo, hi := prefixBounds(prefixJournal)
	return v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		err := decodeJournal(k, val, func(_ uint32, p ledger.Posting) error { return fn(p) })
		return err == nil, err
	})
}

// ForEachLegResult calls fn for every leg a credit shard recorded.
func (v *Reader) ForEachLegResult(fn func(ledger.LegResult) error) error {
	lo, hi := prefixBounds(prefixLegDone)
	return v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		if len(k) != legDoneKeyLen || len(val) != 1 {
			return false, fmt.Errorf("storage: leg record %x: bad length", k)
		}
		return true, fn(ledger.LegResult{LegKey: ledger.LegKey{TransferID: be.Uint64(k[1:]),
			Kind: ledger.LegKind(k[9])}, Result: ledger.TransferResult(val[0])})
	})
}

// PostingFilter selects an account's postings.
type PostingFilter struct {
	Account      uint64
	TimestampMin uint64 // inclusive; 0: from the start
	TimestampMax uint64 // inclusive; 0: to the end
	Limit        int
	Reversed     bool
	Debits       bool // only postings on the debit side (with Credits unset)
	Credits      bool // only postings on the credit side (with Debits unset)
}

// Postings returns an account's postings that match f, and the timestamp to continue from
// (0 when there is no more).
func (v *Reader) Postings(f PostingFilter) ([]ledger.Posting, uint64, error) {
	hi := f.TimestampMax
	if hi == 0 {
		hi = ^uint64(0)
	}
	var out []ledger.Posting
	var next uint64
	c := v.postingCursor()
	err := c.times(f.Account, f.TimestampMin, hi, f.Reversed, func(ts uint64) (bool, error) {
		p, err := c.posting(f.Account, ts)
		if err != nil {
			return false, err
		}
		debit := p.Op < ledger.OpCreditPost
		if f.Debits != f.Credits && debit != f.Debits {
			return true, nil
		}
		if len(out) == f.Limit {
			next = p.Timestamp
			return false, nil
		}
		out = append(out, p)
		return true, nil
	})
	return out, next, errors.Join(err, c.Close())
}

// slogLogger sends Pebble's log to the process's structured log: its chatter at debug level,
// its errors as errors.
type slogLogger struct{}

func (slogLogger) Infof(format string, args ...interface{}) {
	slog.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (slogLogger) Errorf(format string, args ...interface{}) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (slogLogger) Fatalf(format string, args ...interface{}) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(pebbleFatal(fmt.Sprintf(format, args...)))
}

var _ io.Closer = (*Reader)(nil)
