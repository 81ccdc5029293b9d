package storage

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
)

// Key prefixes of near-real-time reconciliation (README, "Near-real-time reconciliation").
const (
	prefixReconFinding = 'F' // F len(biz) biz len(kind) kind first -> finding
	prefixReconOpen    = 'f' // same                                -> (empty) the finding is not resolved
	prefixReconClosed  = 'W' // W through len(biz) biz              -> first: a window of biz took its events first..through
)

var reconCheckpointKey = []byte{prefixMeta, 'r', 'e', 'c', 'o', 'n', '-', 'c', 'h', 'e', 'c', 'k', 'p', 'o', 'i', 'n', 't'}

// ErrReconFindingNotFound: no finding has that id.
var ErrReconFindingNotFound = errors.New("storage: no such reconciliation finding")

// ErrReconFindingResolved: the finding is resolved already.
var ErrReconFindingResolved = errors.New("storage: the reconciliation finding is resolved already")

// ReconNoteBytesMax is the longest resolution note.
const ReconNoteBytesMax = payment.NoteBytesMax

// ReconFinding is a finding of near-real-time reconciliation as recorded: what the matcher
// found, and whether it was resolved (with a note: a finance user's, or the runner's when a
// later window of the biz id settled a pending order). Its id is (BizID, Kind, First).
type ReconFinding struct {
	recon.Finding
	Resolved         bool
	Note             string
	Created, Updated uint64
}

func reconFindingKey(dst []byte, prefix byte, biz string, kind recon.Kind, first uint64) []byte {
	dst = bizKey(dst, prefix, biz)
	dst = append(dst, byte(len(kind)))
	dst = append(dst, kind...)
	return be.AppendUint64(dst, first)
}

func reconClosedKey(dst []byte, through uint64, biz string) []byte {
	dst = append(dst[:0], prefixReconClosed)
	dst = be.AppendUint64(dst, through)
	dst = append(dst, byte(len(biz)))
	return append(dst, biz...)
}

func encodeReconFinding(dst []byte, f *ReconFinding) []byte {
	dst = append(dst[:0], recordVersion)
	dst = appendString(dst, f.BizID)
	dst = appendString(dst, string(f.Kind))
	dst = av(dst, f.First)
	dst = av(dst, f.Closed)
	dst = av(dst, uint64(len(f.Orders)))
	for _, id := range f.Orders {
		dst = av(dst, id)
	}
	dst = av(dst, uint64(len(f.Differences)))
	for _, d := range f.Differences {
		dst = appendString(dst, string(d.Kind))
		dst = av(dst, d.Order)
		dst = av(dst, uint64(d.Step))
		dst = av(dst, d.Transfer)
		dst = appendString(dst, d.Expected)
		dst = appendString(dst, d.Found)
	}
	dst = av(dst, uint64(f.More))
	resolved := byte(0)
	if f.Resolved {
		resolved = 1
	}
	dst = append(dst, resolved)
	dst = appendString(dst, f.Note)
	dst = av(dst, f.Created)
	return av(dst, f.Updated)
}

func decodeReconFinding(key, v []byte) (*ReconFinding, error) {
	r := reader{b: v}
	if err := r.version("recon finding", key); err != nil {
		return nil, err
	}
	f := &ReconFinding{}
	f.BizID, f.Kind = r.string(), recon.Kind(r.string())
	f.First, f.Closed = r.uvarint(), r.uvarint()
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return nil, fmt.Errorf("storage: recon finding %x: %d orders", key, n)
	}
	for range n {
		f.Orders = append(f.Orders, r.uvarint())
	}
	n = r.uvarint()
	if n > uint64(len(r.b)) {
		return nil, fmt.Errorf("storage: recon finding %x: %d differences", key, n)
	}
	for range n {
		d := payment.Difference{Kind: payment.DiffKind(r.string()), Order: r.uvarint(), Step: int(r.uvarint())}
		d.Transfer, d.Expected, d.Found = r.uvarint(), r.string(), r.string()
		f.Differences = append(f.Differences, d)
	}
	f.More = int(r.uvarint())
	f.Resolved = r.byte() == 1
	f.Note, f.Created, f.Updated = r.string(), r.uvarint(), r.uvarint()
	if err := r.done("recon finding", key); err != nil {
		return nil, err
	}
	if want := reconFindingKey(nil, prefixReconFinding, f.BizID, f.Kind, f.First); string(want) != string(key) {
		return nil, fmt.Errorf("storage: recon finding %x: its fields name another key", key)
	}
	return f, nil
}

// ReconClosedWindow is a window the reconciliation closed and recorded: of BizID, taking its
// events from sequence First through sequence Through.
type ReconClosedWindow struct {
	BizID          string
	First, Through uint64
}

// ReconSettled is a window that matched: its biz id's open pending and not_final findings of
// earlier windows (First below this one's) whose orders are all among Orders (final and clean
// now) are resolved with the note "settled at sequence Closed".
type ReconSettled struct {
	BizID         string
	First, Closed uint64
	Orders        []uint64
}

// ReconWrite is what one step of near-real-time reconciliation makes durable, in one synced
// batch: new findings (one already recorded under the same id is left as it is: recording
// a finding again changes nothing), the windows closed, the pending findings settled, and the
// checkpoint (every event up to it belongs to a closed window), at or below which the closed
// windows are deleted in the same batch.
type ReconWrite struct {
	Findings   []recon.Finding
	Closed     []ReconClosedWindow
	Settled    []ReconSettled
	Checkpoint uint64
	Now        uint64
}

// reconSettleKinds are the kinds a later matched window settles.
var reconSettleKinds = []recon.Kind{recon.KindPending, recon.KindNotFinal}

// ReconCommitted is what CommitRecon changed: findings new to the store, and findings
// settled (resolved by a later matched window).
type ReconCommitted struct{ Recorded, Settled int }

// CommitRecon writes w as one synced batch and answers what it changed. Only the
// reconciliation runner writes findings; it is one goroutine.
func (s *Store) CommitRecon(w ReconWrite) (n ReconCommitted, err error) {
	s.reconMu.Lock()
	defer s.reconMu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var key []byte
	seen := map[string]*ReconFinding{} // the findings new in this write (or read to settle), by key
	stored := map[string]bool{}        // of them, those read from the store
	for i := range w.Findings {
		f := &w.Findings[i]
		if f.BizID == "" || len(f.BizID) > 255 || len(f.Kind) == 0 || len(f.Kind) > 255 {
			return n, fmt.Errorf("storage: recon finding %q %q: bad key", f.BizID, f.Kind)
		}
		key = reconFindingKey(key, prefixReconFinding, f.BizID, f.Kind, f.First)
		found, err := s.Live().get(key, func([]byte) error { return nil })
		if err != nil {
			return n, err
		}
		if found || seen[string(key)] != nil {
			continue
		}
		seen[string(key)] = &ReconFinding{Finding: *f, Created: w.Now, Updated: w.Now}
		n.Recorded++
	}
	// Settled: the open pending and not_final findings, recorded before or in this write.
	for _, st := range w.Settled {
		settle := func(f *ReconFinding) {
			if f.Resolved || f.First >= st.First || !slices.Contains(reconSettleKinds, f.Kind) {
				return
			}
			for _, id := range f.Orders {
				if !slices.Contains(st.Orders, id) {
					return
				}
			}
			f.Resolved, f.Note, f.Updated = true, fmt.Sprintf("settled at sequence %d", st.Closed), w.Now
			n.Settled++
		}
		for _, kind := range reconSettleKinds {
			lower := reconFindingKey(nil, prefixReconOpen, st.BizID, kind, 0)
			upper := reconFindingKey(nil, prefixReconOpen, st.BizID, kind, st.First)
			err := s.Live().scan(lower, upper, false, func(k, _ []byte) (bool, error) {
				fk := append([]byte{prefixReconFinding}, k[1:]...)
				if seen[string(fk)] != nil {
					return true, nil
				}
				var f *ReconFinding
				found, err := s.Live().get(fk, func(val []byte) (err error) { f, err = decodeReconFinding(fk, val); return err })
				if err == nil && !found {
					err = fmt.Errorf("storage: recon finding %x is indexed but missing", fk)
				}
				if err != nil {
					return false, err
				}
				seen[string(fk)], stored[string(fk)] = f, true
				return true, nil
			})
			if err != nil {
				return n, err
			}
		}
		for _, f := range seen {
			if f.BizID == st.BizID {
				settle(f)
			}
		}
	}
	for k, f := range seen {
		if stored[k] && !f.Resolved {
			continue // read to settle, not settled: unchanged
		}
		if err := b.Set([]byte(k), encodeReconFinding(nil, f), nil); err != nil {
			return n, err
		}
		open := reconFindingKey(nil, prefixReconOpen, f.BizID, f.Kind, f.First)
		if f.Resolved {
			err = b.Delete(open, nil)
		} else {
			err = b.Set(open, nil, nil)
		}
		if err != nil {
			return n, err
		}
	}
	for _, c := range w.Closed {
		if len(c.BizID) > 255 {
			return n, fmt.Errorf("storage: recon window of %q: bad key", c.BizID)
		}
		if c.Through > w.Checkpoint {
			if err := b.Set(reconClosedKey(key, c.Through, c.BizID), be.AppendUint64(nil, c.First), nil); err != nil {
				return n, err
			}
		}
	}
	lower, _ := prefixBounds(prefixReconClosed)
	if err := b.DeleteRange(lower, reconClosedKey(nil, w.Checkpoint+1, ""), nil); err != nil {
		return n, err
	}
	if err := b.Set(reconCheckpointKey, be.AppendUint64(nil, w.Checkpoint), nil); err != nil {
		return n, err
	}
	if err := commitSynced(b); err != nil {
		return n, fmt.Errorf("storage: commit reconciliation: %w", err)
	}
	return n, nil
}

// ReconCheckpoint is the last sequence near-real-time reconciliation processed in full (0:
// none).
func (v *Reader) ReconCheckpoint() (uint64, error) {
	var at uint64
	_, err := v.get(reconCheckpointKey, func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: recon checkpoint: %d bytes", len(val))
		}
		at = be.Uint64(val)
		return nil
	})
	return at, err
}

// ReconClosed calls fn with the windows closed past the checkpoint.
func (v *Reader) ReconClosed(fn func(ReconClosedWindow)) error {
	lower, upper := prefixBounds(prefixReconClosed)
	return v.scan(lower, upper, false, func(k, val []byte) (bool, error) {
		if len(k) < 10 || int(k[9]) != len(k)-10 || len(val) != 8 {
			return false, fmt.Errorf("storage: recon window key %x: bad length", k)
		}
		fn(ReconClosedWindow{Through: be.Uint64(k[1:9]), BizID: string(k[10:]), First: be.Uint64(val)})
		return true, nil
	})
}

// ReconFinding reads one finding.
func (v *Reader) ReconFinding(biz string, kind recon.Kind, first uint64) (f *ReconFinding, found bool, err error) {
	key := reconFindingKey(nil, prefixReconFinding, biz, kind, first)
	found, err = v.get(key, func(val []byte) (err error) { f, err = decodeReconFinding(key, val); return err })
	return f, found, err
}

// ReconFindings calls fn with the findings not resolved (or, with resolved, all), ordered by
// biz id, kind and first sequence, starting after the finding (biz, kind, first) (biz empty:
// from the first), until fn returns false.
func (v *Reader) ReconFindings(resolved bool, biz string, kind recon.Kind, first uint64, fn func(*ReconFinding) bool) error {
	prefix := byte(prefixReconOpen)
	if resolved {
		prefix = prefixReconFinding
	}
	lower, upper := prefixBounds(prefix)
	if biz != "" {
		lower = append(reconFindingKey(nil, prefix, biz, kind, first), 0)
	}
	return v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		key := append([]byte{prefixReconFinding}, k[1:]...)
		var f *ReconFinding
		found, err := v.get(key, func(val []byte) (err error) { f, err = decodeReconFinding(key, val); return err })
		if err == nil && !found {
			err = fmt.Errorf("storage: recon finding %x is indexed but missing", key)
		}
		if err != nil {
			return false, err
		}
		return fn(f), nil
	})
}

// ResolveReconFinding marks a finding resolved with a note, in one synced batch: the record
// keeps what was found; the repair itself is made by new postings, never by editing history.
func (s *Store) ResolveReconFinding(biz string, kind recon.Kind, first uint64, note string, now uint64) (*ReconFinding, error) {
	if len(note) > ReconNoteBytesMax {
		return nil, fmt.Errorf("storage: the note is longer than %d bytes", ReconNoteBytesMax)
	}
	s.reconMu.Lock()
	defer s.reconMu.Unlock()
	f, found, err := s.Live().ReconFinding(biz, kind, first)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, ErrReconFindingNotFound
	case f.Resolved:
		return nil, ErrReconFindingResolved
	}
	f.Resolved, f.Note, f.Updated = true, note, now
	b := s.db.NewBatch()
	defer b.Close()
	key := reconFindingKey(nil, prefixReconFinding, biz, kind, first)
	if err := b.Set(key, encodeReconFinding(nil, f), nil); err != nil {
		return nil, err
	}
	if err := b.Delete(reconFindingKey(nil, prefixReconOpen, biz, kind, first), nil); err != nil {
		return nil, err
	}
	if err := commitSynced(b); err != nil {
		return nil, fmt.Errorf("storage: resolve recon finding: %w", err)
	}
	return f, nil
}
