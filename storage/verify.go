package storage

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/ledgercore/ledger/ledger"
)

// Report is what Verify found.
type Report struct {
	Problems   []string
	Accounts   uint64
	Postings   uint64
	OutboxLegs uint64
}

// Verify recomputes every balance from the journal in v and checks the invariants
// (docs/ARCHITECTURE.md) that a stored state must meet (ledger.Audit), plus what only
// storage can see: every pending index entry names a pending transfer, every posting names a stored
// transfer of its account with its amount (a transfer booked twice under one id, with other
// fields, shows here), and the event stream's logs and index are gapless and agree. It returns the problems found (none:
// clean) or the error that stopped it.
func Verify(v *Reader, shards uint32) (Report, error) {
	var rep Report
	if shards != v.s.shards {
		return rep, fmt.Errorf("storage: verify %d shards of a store of %d", shards, v.s.shards)
	}
	audit := ledger.NewAudit(shards)
	ledgers := map[uint64]uint32{}
	err := v.ForEachAccount(func(a ledger.Account) error {
		audit.Account(a)
		ledgers[a.ID] = a.Ledger
		rep.Accounts++
		return nil
	})
	if err != nil {
		return rep, err
	}
	var problems []string
	refs := make([]postingRef, 0, 1024)
	// What the index pages must list: per shard, the journal's postings up to its paged mark.
	paged, sealed := make([]uint64, shards), make([]uint64, shards)
	toPage := make([]uint64, shards)
	for s := range shards {
		sv, err := v.shardView(s)
		if err != nil {
			return rep, err
		}
		paged[s], sealed[s] = sv.paged, sv.sealed
	}
	// The postings are scanned verifyRefsMax at a time, each lot checked against its
	// transfers between two scans: no iterator of the postings stays open (pinning its
	// tables) while a lot is checked.
	// Per shard, the time of its first time record (format 9): a record of one posting
	// (format 8) at or after it would be missed by point reads, which stop at the time record.
	firstTime := make([]uint64, shards)
	from, hi := prefixBounds(prefixJournal)
	for from != nil {
		var resume []byte
		err = v.scan(from, hi, false, func(k, val []byte) (bool, error) {
			if len(k) >= journalTimeKeyLen {
				if shard, ts := uint32(be.Uint16(k[1:])), be.Uint64(k[3:]); shard < shards {
					switch {
					case len(k) == journalTimeKeyLen && firstTime[shard] == 0:
						firstTime[shard] = ts
					case len(k) == journalKeyLen && firstTime[shard] != 0:
						problems = append(problems, fmt.Sprintf("shard %d: a record of one posting (format 8) at %d, after its time records began at %d",
							shard, ts, firstTime[shard]))
					}
				}
			}
			err := decodeJournal(k, val, func(shard uint32, p ledger.Posting) error {
				if shard >= shards || ledger.ShardOf(p.Account, shards) != shard {
					problems = append(problems, fmt.Sprintf("posting of account %d at %d in the journal of shard %d",
						p.Account, p.Timestamp, shard))
					return nil
				}
				if p.Timestamp <= paged[shard] {
					toPage[shard]++
				}
				l, ok := ledgers[p.Account]
				if !ok {
					problems = append(problems, fmt.Sprintf("posting of unknown account %d at %d", p.Account, p.Timestamp))
					return nil
				}
				audit.Posting(p, l)
				rep.Postings++
				refs = append(refs, postingRef{transfer: p.TransferID, account: p.Account, amount: p.Amount, at: p.Timestamp})
				return nil
			})
			if err != nil {
				return false, err
			}
			if len(refs) >= verifyRefsMax { // a record's postings all go in one lot
				resume = append(append(make([]byte, 0, len(k)+1), k...), 0) // the next key up
				return false, nil
			}
			return true, nil
		})
		if err == nil {
			problems, err = postingsMatch(v, refs, problems)
		}
		if err != nil {
			return rep, err
		}
		refs, from = refs[:0], resume
	}
	if problems, err = verifyPages(v, shards, paged, sealed, toPage, problems); err != nil {
		return rep, err
	}
	err = v.ForEachOutboxLeg(func(l ledger.Leg) error {
		if l.From >= shards {
			problems = append(problems, fmt.Sprintf("outbox leg %+v of shard %d of %d", l.LegKey, l.From, shards))
		}
		audit.Outbox(l)
		rep.OutboxLegs++
		return nil
	})
	if err != nil {
		return rep, err
	}
	for s := uint32(0); s < shards; s++ {
		err := v.ForEachPending(s, func(ledger.Transfer) error { return nil })
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if err := v.ForEachLegResult(func(r ledger.LegResult) error { audit.LegApplied(r); return nil }); err != nil {
		return rep, err
	}
	if problems, err = verifyEvents(v, problems); err != nil {
		return rep, err
	}
	rep.Problems = append(problems, audit.Problems()...)
	return rep, nil
}

// verifyRefsMax is how many postings Verify checks against their transfers at a time (32 MiB):
// its memory stays bounded whatever the size of the store. (A variable for tests.)
var verifyRefsMax = 1 << 20

// postingRef is what Verify checks of a posting against its transfer.
type postingRef struct{ transfer, account, amount, at uint64 }

// postingsMatch checks every posting against its transfer: the account is one of the
// transfer's, and the amount is the transfer's (a post or void stores the amount it moved; an
// expiry releases its hold's amount). The postings, sorted by transfer, are joined with one
// forward walk over the transfers (a look-up per posting took six times as long).
func postingsMatch(v *Reader, refs []postingRef, problems []string) ([]string, error) {
	slices.SortFunc(refs, func(a, b postingRef) int { return cmp.Compare(a.transfer, b.transfer) })
	transfers := v.renewingIter(prefixBounds(prefixTransfer))
	var t ledger.Transfer
	found := false
	var key [accountKeyLen]byte
	for i, r := range refs {
		if i == 0 || r.transfer != refs[i-1].transfer {
			it, err := transfers.iter()
			if err != nil {
				return problems, errors.Join(err, transfers.Close())
			}
			k := idKey(key[:0], prefixTransfer, r.transfer)
			found = it.SeekGE(k) && bytes.Equal(it.Key(), k)
			if found {
				val, err := it.ValueAndErr()
				if err == nil {
					t, err = decodeTransfer(it.Key(), val)
				}
				if err != nil {
					return problems, errors.Join(err, transfers.Close())
				}
			}
		}
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("posting of account %d at %d names missing transfer %d",
				r.account, r.at, r.transfer))
		case r.account != t.DebitAccountID && r.account != t.CreditAccountID:
			problems = append(problems, fmt.Sprintf("posting of account %d at %d names transfer %d of accounts %d and %d",
				r.account, r.at, t.ID, t.DebitAccountID, t.CreditAccountID))
		case r.amount != t.Amount:
			problems = append(problems, fmt.Sprintf("posting of account %d at %d moves %d, its transfer %d has %d",
				r.account, r.at, r.amount, t.ID, t.Amount))
		}
	}
	return problems, transfers.Close()
}

// verifyPages checks the index pages against the journal: each is of its account's shard and
// of a generation up to the shard's paged mark (or, while a sealed generation is paged, up to
// its end: those the readers do not use yet), after the shard's generation before it; it lists
// postings of its account in that generation (strictly ascending across the account's pages)
// that are in the journal; the pages list as many postings per shard up to the mark as the
// journal has (toPage): every such posting exactly once; and each account with pages up to
// the mark but none in the generation at the mark (the newest) has its latest paged posting
// (k), the last its pages list (one in the newest may have an older one: it was quiet once).
func verifyPages(v *Reader, shards uint32, paged, sealed, toPage []uint64, problems []string) ([]string, error) {
	listed := make([]uint64, shards)
	refs := make([]postingAt, 0, 1024)
	// account -> the last posting its pages up to the mark list, and whether one is in the
	// generation at the mark (the newest): as much memory as the accounts, like the audit's.
	type pagedLast struct {
		last   uint64
		newest bool
	}
	latest := map[uint64]pagedLast{}
	// The page before in key order: a generation's pages of an account list ascending postings.
	var runGen, runAccount, runLast uint64
	runShard := ^uint32(0)
	prevGen := make([]uint64, shards)
	curGen := make([]uint64, shards)
	var ts []uint64
	from, hi := prefixBounds(prefixGenPage)
	for from != nil {
		var resume []byte
		err := v.scan(from, hi, false, func(k, val []byte) (bool, error) {
			var err error
			if ts, err = decodePage(ts[:0], k, val); err != nil {
				return false, err
			}
			shard, gen, a, _ := genPageParts(k)
			if shard >= shards || ledger.ShardOf(a, shards) != shard {
				problems = append(problems, fmt.Sprintf("index page %x: account %d is not of shard %d", k, a, shard))
				return true, nil
			}
			if gen != curGen[shard] {
				prevGen[shard], curGen[shard] = curGen[shard], gen
			}
			top := max(paged[shard], sealed[shard])
			if shard != runShard || gen != runGen || a != runAccount {
				runShard, runGen, runAccount, runLast = shard, gen, a, 0
			}
			for _, t := range ts {
				if t <= runLast || t <= prevGen[shard] || t > gen || gen > top {
					problems = append(problems, fmt.Sprintf("index page %x: account %d's posting at %d is out of order, outside its generation (after %d, to %d) or past its shard's paged mark %d",
						k, a, t, prevGen[shard], gen, top))
					continue
				}
				runLast = t
				if gen <= paged[shard] {
					latest[a] = pagedLast{last: t, newest: latest[a].newest || gen == paged[shard]}
					listed[shard]++
				}
				refs = append(refs, postingAt{account: a, ts: t})
			}
			if len(refs) >= verifyRefsMax {
				resume = append(append(make([]byte, 0, len(k)+1), k...), 0)
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return problems, err
		}
		if problems, err = pagedInJournal(v, refs, problems); err != nil {
			return problems, err
		}
		refs, from = refs[:0], resume
	}
	for s := range shards {
		if listed[s] != toPage[s] {
			problems = append(problems, fmt.Sprintf("shard %d: index pages list %d postings, the journal has %d up to the paged mark %d",
				s, listed[s], toPage[s], paged[s]))
		}
	}
	lo, hi := prefixBounds(prefixLatest)
	err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		if len(k) != latestKeyLen || len(val) != 8 {
			problems = append(problems, fmt.Sprintf("latest paged posting %x: bad record %x", k, val))
			return true, nil
		}
		a := be.Uint64(k[1:])
		p, ok := latest[a]
		want := p.last
		switch got := be.Uint64(val); {
		case p.newest && got <= want, !p.newest && ok && got == want:
		default:
			problems = append(problems, fmt.Sprintf("account %d: latest paged posting %d, its pages' last is %d", a, got, want))
		}
		delete(latest, a)
		return true, nil
	})
	var quiet []uint64
	for a, p := range latest {
		if !p.newest {
			quiet = append(quiet, a)
		}
	}
	slices.Sort(quiet)
	for _, a := range quiet {
		problems = append(problems, fmt.Sprintf("account %d: no latest paged posting, its pages' last is %d", a, latest[a].last))
	}
	return problems, err
}

// pagedInJournal checks that the postings refs (from index pages) are in the journal.
func pagedInJournal(v *Reader, refs []postingAt, problems []string) ([]string, error) {
	shards := v.s.shards
	sortJournalOrder(refs, shards)
	journal := v.renewingIter(prefixBounds(prefixJournal))
	var key [journalKeyLen]byte
	for _, r := range refs {
		it, err := journal.iter()
		if err != nil {
			return problems, errors.Join(err, journal.Close())
		}
		_, found, err := seekPosting(it, false, &key, ledger.ShardOf(r.account, shards), r.ts, r.account)
		if err != nil {
			return problems, errors.Join(err, journal.Close())
		}
		if !found {
			problems = append(problems, fmt.Sprintf("index pages list account %d's posting at %d, which is not in the journal", r.account, r.ts))
		}
	}
	return problems, journal.Close()
}
