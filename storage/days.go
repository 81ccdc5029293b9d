package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ledgercore/ledger/ledger"
)

// Accounting days and end of day. Each shard stores its current day (d) and, for every day
// it switched to, its clock at the switch (w): every posting it wrote afterwards has a later
// timestamp, so the postings of a day and later are found through each account's index
// from there, not by a scan of the whole journal. End of day stores each account's closing balance of the day (z; an
// account whose four totals are all zero has none) and one record per day (n) with the
// phase it reached and its outcome.

// SnapshotBatchRecordsMax is the most closing balances one batch of a snapshot writes.
const SnapshotBatchRecordsMax = 4096

const (
	shardDayKeyLen = 1 + 2
	dayStartKeyLen = 1 + 4 + 2
	snapshotKeyLen = 1 + 4 + 8
)

func shardDayKey(dst []byte, shard uint32) []byte {
	dst = append(dst[:0], prefixShardDay)
	return be.AppendUint16(dst, uint16(shard))
}

func dayStartKey(dst []byte, day ledger.Day, shard uint32) []byte {
	dst = append(dst[:0], prefixDayStart)
	dst = be.AppendUint32(dst, uint32(day))
	return be.AppendUint16(dst, uint16(shard))
}

func snapshotKey(dst []byte, day ledger.Day, account uint64) []byte {
	dst = append(dst[:0], prefixSnapshot)
	dst = be.AppendUint32(dst, uint32(day))
	return be.AppendUint64(dst, account)
}

func eodKey(dst []byte, day ledger.Day) []byte {
	dst = append(dst[:0], prefixEOD)
	return be.AppendUint32(dst, uint32(day))
}

// InitDays gives every shard its first accounting day, if the store has none yet (a new
// store, or one older than days: its postings have no day and count in the first day). Its
// day start is clock 0: every posting of the store is of that day or later.
func (s *Store) InitDays(day ledger.Day) error {
	if !day.Valid() || !day.Next().Valid() {
		return fmt.Errorf("storage: first accounting day %v is not a date with a next day", day)
	}
	v := s.Live()
	_, found, err := v.ShardDay(0)
	if err != nil || found {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for shard := range s.shards {
		_ = b.Set(dayStartKey(nil, day, shard), be.AppendUint64(nil, 0), nil)
		_ = b.Set(shardDayKey(nil, shard), be.AppendUint32(nil, uint32(day)), nil)
	}
	if err := commitSynced(b); err != nil {
		return fmt.Errorf("storage: first accounting day: %w", err)
	}
	return nil
}

// ShardDay reads a shard's current accounting day.
func (v *Reader) ShardDay(shard uint32) (day ledger.Day, found bool, err error) {
	var key [shardDayKeyLen]byte
	found, err = v.get(shardDayKey(key[:0], shard), func(val []byte) error {
		if len(val) != 4 {
			return fmt.Errorf("storage: day of shard %d: %d bytes", shard, len(val))
		}
		day = ledger.Day(be.Uint32(val))
		return nil
	})
	return day, found, err
}

// DayStarts reads, per shard, the clock at which the shard switched to day; found is false
// unless every shard has switched to it.
func (v *Reader) DayStarts(day ledger.Day, shards uint32) (clocks []uint64, found bool, err error) {
	clocks = make([]uint64, shards)
	var key [dayStartKeyLen]byte
	for shard := range shards {
		ok, err := v.get(dayStartKey(key[:0], day, shard), func(val []byte) error {
			if len(val) != 8 {
				return fmt.Errorf("storage: start of day %v on shard %d: %d bytes", day, shard, len(val))
			}
			clocks[shard] = be.Uint64(val)
			return nil
		})
		if err != nil || !ok {
			return nil, false, err
		}
	}
	return clocks, true, nil
}

// DayAccount is one account as end of day sees it, on one consistent view of the store.
type DayAccount struct {
	// Account has its balance now (for a transit account, its record's).
	ledger.Account
	// Opening is the closing balance of the day before, as its snapshot holds it (zero on
	// the first day).
	Opening ledger.Balance
	// Day is what the day's postings moved; Later is what the postings of later days moved.
	Day, Later ledger.Movement
}

// DayQuery says which day ForEachDayAccount reads.
type DayQuery struct {
	Day ledger.Day
	// First: the store's first day (no day before it to open from): opening balances are
	// zero, and postings of no day or of earlier days count in it (ledger.DayOf).
	First bool
	// Starts are the clocks at which each shard switched to Day (DayStarts).
	Starts []uint64
}

// ForEachDayAccount calls fn for every account, in id order (transit accounts last), with its
// opening balance, the day's movements and later days' ones. It reads the postings of each
// account written since its shard switched to the day, and keeps in memory only the transit
// accounts' movements (one per shard and ledger), which it sums from the split postings of
// their shards' accounts.
func (v *Reader) ForEachDayAccount(q DayQuery, fn func(*DayAccount) error) error {
	c := v.postingCursor()
	defer c.Close()
	opening, err := v.openingIter(q)
	if err != nil {
		return err
	}
	defer opening.close()
	transit := map[uint64]*[2]ledger.Movement{} // day, later
	lo, hi := prefixBounds(prefixAccount)
	return v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		a, err := decodeAccount(k, val)
		if err != nil {
			return false, err
		}
		d := DayAccount{Account: a}
		if d.Opening, err = opening.balance(a.ID); err != nil {
			return false, err
		}
		if a.ID >= ledger.TransitIDMin {
			if m := transit[a.ID]; m != nil {
				d.Day, d.Later = m[0], m[1]
			}
			return true, fn(&d)
		}
		shard := ledger.ShardOf(a.ID, uint32(len(q.Starts)))
		var tm *[2]ledger.Movement
		moved := false
		err = c.times(a.ID, q.Starts[shard]+1, ^uint64(0), false, func(ts uint64) (bool, error) {
			p, err := c.posting(a.ID, ts)
			if err != nil {
				return false, err
			}
			d.Account.Balance, moved = p.After, true
			m := 1
			switch day := ledger.DayOf(&p, q.Day, q.First); {
			case day == q.Day:
				m = 0
			case day < q.Day:
				return true, nil // a late leg of an earlier day, closed in that day's snapshot
			}
			if !(&[2]*ledger.Movement{&d.Day, &d.Later})[m].Add(&p) {
				return false, fmt.Errorf("storage: account %d: movements pass 2^128", a.ID)
			}
			if p.Split {
				if tm == nil {
					id := ledger.TransitAccountID(shard, a.Ledger)
					if tm = transit[id]; tm == nil {
						tm = &[2]ledger.Movement{}
						transit[id] = tm
					}
				}
				if !tm[m].AddMirror(&p) {
					return false, fmt.Errorf("storage: transit of shard %d: movements pass 2^128", shard)
				}
			}
			return true, nil
		})
		if err != nil {
			return false, err
		}
		if !moved { // no posting since the day's start
			if err := c.balance(&d.Account); err != nil {
				return false, err
			}
		}
		return true, fn(&d)
	})
}

// openingIter walks the snapshot of the day before q.Day alongside the accounts.
type openingIter struct {
	it   *pebble.Iterator
	day  ledger.Day
	none bool
}

func (v *Reader) openingIter(q DayQuery) (*openingIter, error) {
	if q.First {
		return &openingIter{none: true}, nil
	}
	prev := q.Day.Prev()
	lo := append([]byte{prefixSnapshot}, be.AppendUint32(nil, uint32(prev))...)
	hi := append([]byte{prefixSnapshot}, be.AppendUint32(nil, uint32(prev)+1)...)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	return &openingIter{it: it, day: prev}, nil
}

func (o *openingIter) balance(id uint64) (ledger.Balance, error) {
	if o.none {
		return ledger.Balance{}, nil
	}
	var key [snapshotKeyLen]byte
	k := snapshotKey(key[:0], o.day, id)
	if !o.it.SeekGE(k) || string(o.it.Key()) != string(k) {
		return ledger.Balance{}, o.it.Error()
	}
	val, err := o.it.ValueAndErr()
	if err != nil {
		return ledger.Balance{}, fmt.Errorf("storage: read snapshot: %w", err)
	}
	return decodeSnapshot(k, val)
}

func (o *openingIter) close() {
	if o.it != nil {
		_ = o.it.Close()
	}
}

func decodeSnapshot(key, val []byte) (ledger.Balance, error) {
	r := reader{b: val}
	if err := r.version("snapshot", key); err != nil {
		return ledger.Balance{}, err
	}
	b := r.balance()
	return b, r.done("snapshot", key)
}

// SnapshotWriter writes one day's closing balances in batches of SnapshotBatchRecordsMax.
type SnapshotWriter struct {
	s     *Store
	day   ledger.Day
	batch *pebble.Batch
	n     int
}

// WriteSnapshot starts the day's snapshot; any snapshot of the day written before (by an end
// of day a crash interrupted, or a failed day's, recomputed) is deleted in the same batch as
// the first balances. A snapshot of more than SnapshotBatchRecordsMax balances is committed
// in several batches: until Close returns, what is stored for the day may be partial, and
// the caller's record must say so (eod records the phase before and after). Discard, not
// Close, ends a snapshot that failed.
func (s *Store) WriteSnapshot(day ledger.Day) *SnapshotWriter {
	w := &SnapshotWriter{s: s, day: day, batch: s.db.NewBatch()}
	_ = w.batch.DeleteRange(snapshotKey(nil, day, 0), eodSnapshotEnd(day), nil)
	return w
}

func eodSnapshotEnd(day ledger.Day) []byte {
	return append([]byte{prefixSnapshot}, be.AppendUint32(nil, uint32(day)+1)...)
}

// Add writes an account's closing balance (nothing for a zero balance).
func (w *SnapshotWriter) Add(id uint64, b ledger.Balance) error {
	if b == (ledger.Balance{}) {
		return nil
	}
	_ = w.batch.Set(snapshotKey(nil, w.day, id), appendBalance([]byte{recordVersion}, &b), nil)
	if w.n++; w.n >= SnapshotBatchRecordsMax {
		return w.flush()
	}
	return nil
}

func (w *SnapshotWriter) flush() error {
	err := commitSynced(w.batch)
	w.batch.Reset()
	w.n = 0
	if err != nil {
		return fmt.Errorf("storage: snapshot of %v: %w", w.day, err)
	}
	return nil
}

// Discard releases the batch without writing what it holds (the balances since the last
// full batch; on the first batch, the deletion of the old snapshot too).
func (w *SnapshotWriter) Discard() { _ = w.batch.Close() }

// Close writes what is left, durably, and releases the batch.
func (w *SnapshotWriter) Close() error {
	err := w.flush()
	return errors.Join(err, w.batch.Close())
}

// ForEachSnapshot calls fn for every closing balance stored for day, by account.
func (v *Reader) ForEachSnapshot(day ledger.Day, fn func(id uint64, b ledger.Balance) error) error {
	return v.scan(snapshotKey(nil, day, 0), eodSnapshotEnd(day), false, func(k, val []byte) (bool, error) {
		if len(k) != snapshotKeyLen {
			return false, fmt.Errorf("storage: snapshot key %x: bad length", k)
		}
		b, err := decodeSnapshot(k, val)
		if err != nil {
			return false, err
		}
		return true, fn(be.Uint64(k[5:]), b)
	})
}

// EODRecord is one day's end-of-day record: the phase it reached, its outcome, and the
// result the phases left (the trial balance, in the eod package's encoding).
type EODRecord struct {
	Day     ledger.Day
	Phase   uint8
	Outcome uint8
	Started uint64 // Unix ns
	Updated uint64 // Unix ns
	Result  []byte
}

// PutEOD writes a day's end-of-day record, durably.
func (s *Store) PutEOD(r *EODRecord) error {
	v := append([]byte{recordVersion}, r.Phase, r.Outcome)
	v = av(v, r.Started)
	v = av(v, r.Updated)
	v = av(v, uint64(len(r.Result)))
	v = append(v, r.Result...)
	if err := pebbleWrite(func() error { return s.db.Set(eodKey(nil, r.Day), v, pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: end-of-day record of %v: %w", r.Day, err)
	}
	return nil
}

// EOD reads a day's end-of-day record.
func (v *Reader) EOD(day ledger.Day) (rec EODRecord, found bool, err error) {
	k := eodKey(nil, day)
	found, err = v.get(k, func(val []byte) error { rec, err = decodeEOD(k, val); return err })
	return rec, found, err
}

// LastEOD reads the end-of-day record of the latest day that has one.
func (v *Reader) LastEOD() (rec EODRecord, found bool, err error) {
	lo, hi := prefixBounds(prefixEOD)
	err = v.scan(lo, hi, true, func(k, val []byte) (bool, error) {
		rec, err = decodeEOD(k, val)
		found = err == nil
		return false, err
	})
	return rec, found, err
}

func decodeEOD(key, val []byte) (EODRecord, error) {
	if len(key) != 5 || len(val) < 3 {
		return EODRecord{}, fmt.Errorf("storage: end-of-day record %x: bad length", key)
	}
	r := reader{b: val}
	if err := r.version("end-of-day", key); err != nil {
		return EODRecord{}, err
	}
	rec := EODRecord{Day: ledger.Day(be.Uint32(key[1:])), Phase: val[1], Outcome: val[2]}
	r.b = val[3:]
	rec.Started, rec.Updated = r.uvarint(), r.uvarint()
	n := r.uvarint()
	if r.bad || n != uint64(len(r.b)) {
		return EODRecord{}, fmt.Errorf("storage: end-of-day record %x: malformed", key)
	}
	rec.Result = append([]byte(nil), r.b...)
	return rec, nil
}

// SnapshotBalance reads an account's closing balance of day (zero when none is stored).
func (v *Reader) SnapshotBalance(day ledger.Day, id uint64) (b ledger.Balance, err error) {
	var key [snapshotKeyLen]byte
	k := snapshotKey(key[:0], day, id)
	_, err = v.get(k, func(val []byte) (derr error) { b, derr = decodeSnapshot(k, val); return derr })
	return b, err
}

// ForEachEOD calls fn for every day's end-of-day record, oldest day first.
func (v *Reader) ForEachEOD(fn func(*EODRecord) error) error { return v.ForEachEODFrom(0, fn) }

// ForEachEODFrom calls fn for the end-of-day record of every day from day on, oldest first.
func (v *Reader) ForEachEODFrom(day ledger.Day, fn func(*EODRecord) error) error {
	_, hi := prefixBounds(prefixEOD)
	return v.scan(eodKey(nil, day), hi, false, func(k, val []byte) (bool, error) {
		rec, err := decodeEOD(k, val)
		if err != nil {
			return false, err
		}
		return true, fn(&rec)
	})
}
