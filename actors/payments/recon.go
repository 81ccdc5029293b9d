package payments

import (
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/storage"
)

// ReconFindings lists the findings of near-real-time reconciliation (storage.ReconFinding) not
// resolved (or, with includeResolved, all), durable, in key order after the finding (biz,
// kind, first) (biz empty: from the first), at most limit (1 to ListMax+1: a caller asks one
// past its page to learn whether more follow). They are in the store whether or not the
// reconciliation runs now.
func (e *Engine) ReconFindings(includeResolved bool, biz string, kind recon.Kind, first uint64, limit int) ([]*storage.ReconFinding, error) {
	limit = min(max(limit, 1), ListMax+1)
	var out []*storage.ReconFinding
	err := e.read(func(v *storage.Reader) error {
		return v.ReconFindings(includeResolved, biz, kind, first, func(f *storage.ReconFinding) bool {
			out = append(out, f)
			return len(out) < limit
		})
	})
	return out, err
}

// ResolveReconFinding marks a finding resolved with a note, durable when it returns; its
// errors are storage.ErrReconFindingNotFound and storage.ErrReconFindingResolved (nothing
// written), or the store's.
func (e *Engine) ResolveReconFinding(biz string, kind recon.Kind, first uint64, note string) (*storage.ReconFinding, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.active.Done()
	return e.store.ResolveReconFinding(biz, kind, first, note, e.cfg.Now())
}
