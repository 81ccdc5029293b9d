package storage

import (
	"fmt"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
)

// Key prefixes of channel reconciliation (docs/PAYMENTS.md, "Channel statements").
const (
	prefixTxnDay     = 'D' // D len(ch) ch at order        -> (empty) the order recorded a channel txn at `at` (ns)
	prefixStmtRecord = 'R' // R len(ch) ch date len(txn) txn -> statement record
	prefixStmtOpen   = 'r' // r len(ch) ch date len(txn) txn -> (empty) the record is not resolved
	prefixStmtSeen   = 'Q' // Q len(ch) ch txn               -> date: the txn is on that date's statement
	prefixStmtImport = 'I' // I len(ch) ch date sha256       -> lines: that file was imported
)

func txnDayKey(dst []byte, ch string, at, order uint64) []byte {
	dst = be.AppendUint64(bizKey(dst, prefixTxnDay, ch), at)
	return be.AppendUint64(dst, order)
}

func stmtRecordKey(dst []byte, prefix byte, ch, date, txn string) []byte {
	dst = append(bizKey(dst, prefix, ch), date...)
	dst = append(dst, byte(len(txn)))
	return append(dst, txn...)
}

func stmtSeenKey(dst []byte, ch, txn string) []byte {
	return append(bizKey(dst, prefixStmtSeen, ch), txn...)
}

func stmtImportKey(dst []byte, ch, date string, sum [32]byte) []byte {
	dst = append(bizKey(dst, prefixStmtImport, ch), date...)
	return append(dst, sum[:]...)
}

// OrdersWithTxnsRecorded calls fn with the ids of the orders of channel ch that recorded a
// channel txn at a time in [from, to), in ascending time (an order once per time), until fn
// returns false.
func (v *Reader) OrdersWithTxnsRecorded(ch string, from, to uint64, fn func(id uint64) bool) error {
	lower, upper := txnDayKey(nil, ch, from, 0), txnDayKey(nil, ch, to, 0)
	n := len(bizKey(nil, prefixTxnDay, ch))
	return v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		if len(k) != n+16 {
			return false, fmt.Errorf("storage: txn day key %x: bad length", k)
		}
		return fn(be.Uint64(k[n+8:])), nil
	})
}

func encodeStmtRecord(dst []byte, r *payment.StatementRecord) []byte {
	dst = append(dst[:0], recordVersion)
	dst = appendString(dst, r.Channel)
	dst = appendString(dst, r.Day)
	dst = appendString(dst, r.Txn)
	dst = av(dst, uint64(r.Class))
	dst = appendString(dst, r.OrderNo)
	dst = av(dst, r.Order)
	dst = av(dst, uint64(r.Op))
	dst = av(dst, uint64(r.Ledger))
	dst = av(dst, uint64(r.TheirStatus))
	dst = av(dst, uint64(r.OurStatus))
	dst = av(dst, r.TheirAmount)
	dst = av(dst, r.OurAmount)
	dst = appendString(dst, r.Currency)
	dst = av(dst, r.In)
	dst = av(dst, r.Out)
	dst = appendString(dst, r.Note)
	dst = av(dst, uint64(r.Step))
	dst = av(dst, r.Created)
	dst = av(dst, r.Updated)
	return av(dst, r.ShortIn)
}

func decodeStmtRecord(key, v []byte) (*payment.StatementRecord, error) {
	r := reader{b: v}
	if err := r.version("statement record", key); err != nil {
		return nil, err
	}
	x := &payment.StatementRecord{Channel: r.string(), Day: r.string()}
	x.Txn = r.string()
	x.Class = payment.LineClass(r.byte())
	x.OrderNo, x.Order, x.Op, x.Ledger = r.string(), r.uvarint(), channel.Op(r.byte()), r.uint32()
	x.TheirStatus, x.OurStatus = channel.Status(r.byte()), channel.Status(r.byte())
	x.TheirAmount, x.OurAmount, x.Currency = r.uvarint(), r.uvarint(), r.string()
	x.In, x.Out, x.Note = r.uvarint(), r.uvarint(), r.string()
	x.Step, x.Created, x.Updated = payment.ExceptionStep(r.byte()), r.uvarint(), r.uvarint()
	x.ShortIn = r.uvarint()
	if err := r.done("statement record", key); err != nil {
		return nil, err
	}
	if want := stmtRecordKey(nil, key[0], x.Channel, x.Day, x.Txn); string(want) != string(key) {
		return nil, fmt.Errorf("storage: statement record %x: its fields name another key", key)
	}
	return x, nil
}

// StatementWrite is what one step of a statement import (or of a record's resolution) makes
// durable, in one synced batch.
type StatementWrite struct {
	Records []*payment.StatementRecord
	// Seen: the txns of channel Channel's statement of Date, each marked as on it.
	Channel, Date string
	Seen          []string
	// Import, when set, marks the file with this SHA-256 as imported (with its line count).
	Import *[32]byte
	Lines  int
}

// CommitStatement writes w as one synced batch.
func (s *Store) CommitStatement(w StatementWrite) error {
	b := s.db.NewBatch()
	defer b.Close()
	var key, val []byte
	set := func(k, v []byte) error { return b.Set(k, v, nil) }
	for _, r := range w.Records {
		if r.Channel == "" || len(r.Channel) > 255 || len(r.Txn) > 255 || len(r.Day) != len("2006-01-02") {
			return fmt.Errorf("storage: statement record %q %q %q: bad key", r.Channel, r.Day, r.Txn)
		}
		key = stmtRecordKey(key, prefixStmtRecord, r.Channel, r.Day, r.Txn)
		if err := set(key, encodeStmtRecord(val, r)); err != nil {
			return err
		}
		key = stmtRecordKey(key, prefixStmtOpen, r.Channel, r.Day, r.Txn)
		var err error
		if r.Step == payment.ExcResolved {
			err = b.Delete(key, nil)
		} else {
			err = set(key, nil)
		}
		if err != nil {
			return err
		}
	}
	for _, txn := range w.Seen {
		if err := set(stmtSeenKey(key, w.Channel, txn), []byte(w.Date)); err != nil {
			return err
		}
	}
	if w.Import != nil {
		if err := set(stmtImportKey(key, w.Channel, w.Date, *w.Import), av(nil, uint64(w.Lines))); err != nil {
			return err
		}
	}
	if err := commitSynced(b); err != nil {
		return fmt.Errorf("storage: commit statement of %s %s: %w", w.Channel, w.Date, err)
	}
	return nil
}

// StatementRecord reads the record of (channel, date, txn).
func (v *Reader) StatementRecord(ch, date, txn string) (r *payment.StatementRecord, found bool, err error) {
	key := stmtRecordKey(nil, prefixStmtRecord, ch, date, txn)
	found, err = v.get(key, func(val []byte) (err error) { r, err = decodeStmtRecord(key, val); return err })
	return r, found, err
}

// StatementRecords calls fn with the statement records not resolved (or, with resolved, all),
// ordered by channel, date, txn, starting after the record (ch, date, txn) (all empty: from
// the first), until fn returns false.
func (v *Reader) StatementRecords(resolved bool, ch, date, txn string, fn func(*payment.StatementRecord) bool) error {
	prefix := byte(prefixStmtOpen)
	if resolved {
		prefix = prefixStmtRecord
	}
	lower, upper := prefixBounds(prefix)
	if ch != "" {
		lower = append(stmtRecordKey(nil, prefix, ch, date, txn), 0)
	}
	return v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		key := append([]byte{prefixStmtRecord}, k[1:]...)
		var r *payment.StatementRecord
		found, err := v.get(key, func(val []byte) (err error) { r, err = decodeStmtRecord(key, val); return err })
		if err == nil && !found {
			err = fmt.Errorf("storage: statement record %x is indexed but missing", key)
		}
		if err != nil {
			return false, err
		}
		return fn(r), nil
	})
}

// StatementSeen is the date of the statement of channel ch that has txn, if one was imported.
func (v *Reader) StatementSeen(ch, txn string) (date string, found bool, err error) {
	found, err = v.get(stmtSeenKey(nil, ch, txn), func(val []byte) error { date = string(val); return nil })
	return date, found, err
}

// StatementImported reports whether a statement of channel ch for date was imported (any
// file), and whether the file with SHA-256 sum was.
func (v *Reader) StatementImported(ch, date string, sum [32]byte) (day, file bool, err error) {
	lower, upper := prefixBounds(append(bizKey(nil, prefixStmtImport, ch), date...)...)
	err = v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		day = true
		file = file || string(k[len(k)-32:]) == string(sum[:])
		return !file, nil
	})
	return day, file, err
}
