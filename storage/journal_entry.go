package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/ledger"
)

// The journal's two record shapes (format 9).
//
// A round writes one entry for each timestamp of its shard, holding every posting the shard
// made at that time (a transfer within the shard: its debit and its credit):
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
// writes entries only at times after its last posting of the older shape. Against one
// record a posting, an entry halves the journal's keys, which were two of a transfer's three
// (bench/RESULTS.md, session 14).

// journalEntryKeyLen is the length of an entry's key (journalKeyLen: a single posting's).
const journalEntryKeyLen = 1 + 2 + 8

func journalEntryKey(dst []byte, shard uint32, ts uint64) []byte {
	dst = append(dst[:0], prefixJournal)
	dst = be.AppendUint16(dst, uint16(shard))
	return be.AppendUint64(dst, ts)
}

// appendJournalEntry appends the entry of the postings ps[idx] (one timestamp, accounts
// strictly ascending) to dst.
func appendJournalEntry(dst []byte, ps []ledger.Posting, idx []int32) []byte {
	dst = append(dst, recordVersion)
	dst = av(dst, uint64(len(idx)))
	for n, i := range idx {
		p := &ps[i]
		if n > 0 && (p.Account <= ps[idx[n-1]].Account || p.Timestamp != ps[idx[0]].Timestamp) {
			// Two postings of one account at one time: the entry could keep only one.
			panic(fmt.Sprintf("storage: INVARIANT: journal entry at %d: posting of account %d at %d after account %d",
				ps[idx[0]].Timestamp, p.Account, p.Timestamp, ps[idx[n-1]].Account))
		}
		dst = av(dst, p.Account)
		// The record, then its length put before it.
		at := len(dst)
		dst = appendPosting(dst, p)
		var lb [binary.MaxVarintLen64]byte
		ln := av(lb[:0], uint64(len(dst)-at))
		dst = append(dst, ln...)
		copy(dst[at+len(ln):], dst[at:len(dst)-len(ln)])
		copy(dst[at:], ln)
	}
	return dst
}

// walkJournalEntry calls fn with each posting of an entry (key, val): its account and its
// posting record, in ascending account order, until fn answers false.
func walkJournalEntry(key, val []byte, fn func(account uint64, rec []byte) (bool, error)) error {
	r := reader{b: val}
	if err := r.version("journal entry", key); err != nil {
		return err
	}
	n := r.uvarint()
	if n == 0 || n > uint64(len(r.b)) {
		return fmt.Errorf("storage: journal entry %x: malformed count %d", key, n)
	}
	var last uint64
	for i := range n {
		account, l := r.uvarint(), r.uvarint()
		if r.bad || l > uint64(len(r.b)) || i > 0 && account <= last {
			return fmt.Errorf("storage: journal entry %x: malformed", key)
		}
		rec := r.b[:l]
		r.b = r.b[l:]
		if more, err := fn(account, rec); err != nil || !more {
			return err
		}
		last = account
	}
	return r.done("journal entry", key)
}

// decodeJournal calls fn with each posting of a journal record of either shape, and its
// shard.
func decodeJournal(key, val []byte, fn func(shard uint32, p ledger.Posting) error) error {
	if len(key) < journalEntryKeyLen || key[0] != prefixJournal {
		return fmt.Errorf("storage: journal record %x: bad key", key)
	}
	shard, ts := uint32(be.Uint16(key[1:])), be.Uint64(key[3:])
	switch len(key) {
	case journalKeyLen:
		p, err := decodePosting(be.Uint64(key[11:]), ts, key, val)
		if err != nil {
			return err
		}
		return fn(shard, p)
	case journalEntryKeyLen:
		return walkJournalEntry(key, val, func(account uint64, rec []byte) (bool, error) {
			p, err := decodePosting(account, ts, key, rec)
			if err != nil {
				return false, err
			}
			return true, fn(shard, p)
		})
	}
	return fmt.Errorf("storage: journal record %x: bad key", key)
}

// journalRecordAccounts calls fn with the account of each posting of a journal record of either
// shape, and answers the record's timestamp; it decodes no posting.
func journalRecordAccounts(key, val []byte, fn func(account uint64)) (ts uint64, err error) {
	switch {
	case len(key) == journalKeyLen && key[0] == prefixJournal:
		fn(be.Uint64(key[11:]))
		return be.Uint64(key[3:]), nil
	case len(key) == journalEntryKeyLen && key[0] == prefixJournal:
		return be.Uint64(key[3:]), walkJournalEntry(key, val, func(account uint64, _ []byte) (bool, error) {
			fn(account)
			return true, nil
		})
	}
	return 0, fmt.Errorf("storage: journal record %x: bad key", key)
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
	k := journalEntryKey(key[:0], shard, ts)
	if seek(k) && bytes.Equal(it.Key(), k) {
		val, err := it.ValueAndErr()
		if err != nil {
			return p, false, fmt.Errorf("storage: read journal entry: %w", err)
		}
		err = walkJournalEntry(k, val, func(a uint64, rec []byte) (bool, error) {
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
