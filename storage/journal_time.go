package storage

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/ledger"
)

// The journal's two record shapes (format 9).
//
// A round writes one time record for each timestamp of its shard, holding every posting the
// shard made at that time (a transfer within the shard: its debit and its credit):
//
//	j shard timestamp -> version, count, then for each posting in ascending account order:
//	                     account, the length of its posting record, the posting record
//
// Format 8 wrote one record for each posting, which stores upgraded from it keep, and which
// the move of an older store's postings to the journal (upgrade) still writes:
//
//	j shard timestamp account -> posting record
//
// A timestamp has one shape only: the shard's clock grows, and a store upgraded from format 8
// writes time records only at times after its last posting of the older shape. Against one
// record a posting, a time record halves the journal's keys of a transfer within one shard,
// which were two of its three (bench/RESULTS.md, session 14); a transfer across shards still
// makes a time record of one posting on each of its shards.

// journalTimeKeyLen is the length of a time record's key (journalKeyLen: a single posting's).
const journalTimeKeyLen = 1 + 2 + 8

func journalTimeKey(dst []byte, shard uint32, ts uint64) []byte {
	dst = append(dst[:0], prefixJournal)
	dst = be.AppendUint16(dst, uint16(shard))
	return be.AppendUint64(dst, ts)
}

// appendTimeRecord appends the time record of the postings ps[idx] to dst: one timestamp,
// accounts strictly ascending (Writer.Commit checks both).
func appendTimeRecord(dst []byte, ps []ledger.Posting, idx []int32) []byte {
	dst = append(dst, recordVersion)
	dst = av(dst, uint64(len(idx)))
	for _, i := range idx {
		p := &ps[i]
		dst = av(dst, p.Account)
		at := len(dst)
		dst = appendPosting(append(dst, 0), p) // its length goes in the byte before it
		n := len(dst) - at - 1
		if n >= 0x80 {
			// The longest record is 114 bytes (TestPostingRecordsAreShort): a uvarint of one byte.
			panic(fmt.Sprintf("storage: INVARIANT: a posting record of %d bytes", n))
		}
		dst[at] = byte(n)
	}
	return dst
}

// walkTimeRecord calls fn with each posting of a time record (key, val): its account and its
// posting record, in ascending account order, until fn answers false.
func walkTimeRecord(key, val []byte, fn func(account uint64, rec []byte) (bool, error)) error {
	r := reader{b: val}
	if err := r.version("time record", key); err != nil {
		return err
	}
	n := r.uvarint()
	if n == 0 || n > uint64(len(r.b)) {
		return fmt.Errorf("storage: time record %x: malformed count %d", key, n)
	}
	var last uint64
	for i := range n {
		account, l := r.uvarint(), r.uvarint()
		if r.bad || l > uint64(len(r.b)) || i > 0 && account <= last {
			return fmt.Errorf("storage: time record %x: malformed", key)
		}
		rec := r.b[:l]
		r.b = r.b[l:]
		if more, err := fn(account, rec); err != nil || !more {
			return err
		}
		last = account
	}
	return r.done("time record", key)
}

// walkJournal calls fn with each posting of a journal record of either shape: its shard,
// account and timestamp, and its posting record (undecoded).
func walkJournal(key, val []byte, fn func(shard uint32, account, ts uint64, rec []byte) error) error {
	if len(key) != journalKeyLen && len(key) != journalTimeKeyLen || key[0] != prefixJournal {
		return fmt.Errorf("storage: journal record %x: bad key", key)
	}
	shard, ts := uint32(be.Uint16(key[1:])), be.Uint64(key[3:])
	if len(key) == journalKeyLen {
		return fn(shard, be.Uint64(key[11:]), ts, val)
	}
	return walkTimeRecord(key, val, func(account uint64, rec []byte) (bool, error) {
		return true, fn(shard, account, ts, rec)
	})
}

// decodeJournal calls fn with each posting of a journal record of either shape, and its
// shard.
func decodeJournal(key, val []byte, fn func(shard uint32, p ledger.Posting) error) error {
	return walkJournal(key, val, func(shard uint32, account, ts uint64, rec []byte) error {
		p, err := decodePosting(account, ts, key, rec)
		if err != nil {
			return err
		}
		return fn(shard, p)
	})
}

// journalRecordAccounts calls fn with the account and the timestamp of each posting of a
// journal record of either shape; it decodes no posting.
func journalRecordAccounts(key, val []byte, fn func(account, ts uint64)) error {
	return walkJournal(key, val, func(_ uint32, account, ts uint64, _ []byte) error {
		fn(account, ts)
		return nil
	})
}

// seekPosting finds account's posting at ts on shard in the journal with it (found false:
// not there), moving it forward only; byPrefix seeks with SeekPrefixGE (on a key, so that the
// tables' bloom filters skip most), else with SeekGE (for walks in key order). key is its
// scratch space.
func seekPosting(it *pebble.Iterator, byPrefix bool, key *[journalKeyLen]byte, shard uint32, ts, account uint64) (
	p ledger.Posting, found bool, err error) {
	seek := it.SeekGE
	if byPrefix {
		seek = func(k []byte) bool { return it.SeekPrefixGE(k) }
	}
	k := journalTimeKey(key[:0], shard, ts)
	if seek(k) && bytes.Equal(it.Key(), k) {
		val, err := it.ValueAndErr()
		if err != nil {
			return p, false, fmt.Errorf("storage: read time record: %w", err)
		}
		err = walkTimeRecord(k, val, func(a uint64, rec []byte) (bool, error) {
			if a < account {
				return true, nil
			}
			if a == account {
				p, err = decodePosting(account, ts, k, rec)
				found = err == nil
			}
			return false, err
		})
		return p, found, err
	}
	if err := it.Error(); err != nil {
		return p, false, err
	}
	// A posting of the older shape (format 8, or moved from an older store).
	k = journalKey(key[:0], shard, ts, account)
	if !seek(k) || !bytes.Equal(it.Key(), k) {
		return p, false, it.Error()
	}
	val, err := it.ValueAndErr()
	if err != nil {
		return p, false, fmt.Errorf("storage: read posting: %w", err)
	}
	p, err = decodePosting(account, ts, k, val)
	return p, err == nil, err
}
