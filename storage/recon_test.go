package storage

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
)

func openRecon(t *testing.T) *Store {
	t.Helper()
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sampleFinding() ReconFinding {
	return ReconFinding{Finding: recon.Finding{BizID: "order-42", Kind: recon.KindLedger, First: 1<<63 | 12345, Closed: 99,
		Orders: []uint64{3, 1 << 40}, Differences: []payment.Difference{{Kind: payment.DiffMissing, Order: 3, Step: 13,
			Transfer: 1<<63 | 7, Expected: "a transfer", Found: "none"}, {Kind: payment.DiffUnmatched, Expected: "é", Found: ""}},
		More: 4}, Resolved: true, Note: "reversed by 778", Created: 5, Updated: 6}
}

// TestReconFindingRoundTrip: a finding decodes to what was encoded; every truncation, a
// trailing byte and a key naming another finding are refused.
func TestReconFindingRoundTrip(t *testing.T) {
	f := sampleFinding()
	key := reconFindingKey(nil, prefixReconFinding, f.BizID, f.Kind, f.First)
	val := encodeReconFinding(nil, &f)
	got, err := decodeReconFinding(key, val)
	if err != nil || !reflect.DeepEqual(*got, f) {
		t.Fatalf("decoded %+v, %v\nwant %+v", got, err, f)
	}
	for n := range len(val) {
		if _, err := decodeReconFinding(key, val[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(val))
		}
	}
	if _, err := decodeReconFinding(key, append(val, 0)); err == nil {
		t.Fatal("a trailing byte: no error")
	}
	other := reconFindingKey(nil, prefixReconFinding, f.BizID, f.Kind, f.First+1)
	if _, err := decodeReconFinding(other, val); err == nil {
		t.Fatal("a key naming another finding: no error")
	}
}

func listRecon(t *testing.T, s *Store, all bool, biz string, kind recon.Kind, first uint64) []string {
	t.Helper()
	v := s.Snapshot()
	defer v.Close()
	var out []string
	if err := v.ReconFindings(all, biz, kind, first, func(f *ReconFinding) bool {
		out = append(out, fmt.Sprintf("%s/%s/%d", f.BizID, f.Kind, f.First))
		return len(out) < 3
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCommitRecon: recording is idempotent (a finding recorded again is left as it was, even
// resolved); pages start after the named finding; closed windows past the checkpoint are kept
// with their first sequence and deleted once the checkpoint reaches them, in the same batch.
func TestCommitRecon(t *testing.T) {
	s := openRecon(t)
	fs := []recon.Finding{
		{BizID: "a", Kind: recon.KindAmount, First: 3, Closed: 4},
		{BizID: "a", Kind: recon.KindLedger, First: 1<<63 | 9, Closed: 4},
		{BizID: "b", Kind: recon.KindPending, First: 5, Closed: 6, Orders: []uint64{7}},
		{BizID: "c", Kind: recon.KindDuplicate, First: 8, Closed: 8},
	}
	n, err := s.CommitRecon(ReconWrite{Findings: append(fs, fs[0]), Checkpoint: 2, Now: 10,
		Closed: []ReconClosedWindow{{BizID: "a", First: 3, Through: 4}, {BizID: "b", First: 5, Through: 6},
			{BizID: "c", First: 8, Through: 8}}})
	if err != nil || n.Recorded != 4 {
		t.Fatalf("recorded %+v, %v", n, err)
	}
	if _, err := s.ResolveReconFinding("c", recon.KindDuplicate, 8, "refunded", 11); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CommitRecon(ReconWrite{Findings: fs, Checkpoint: 2, Now: 12}); err != nil || n.Recorded != 0 {
		t.Fatalf("again: %+v, %v", n, err)
	}
	if f, _, _ := s.Live().ReconFinding("c", recon.KindDuplicate, 8); !f.Resolved || f.Created != 10 || f.Note != "refunded" {
		t.Fatalf("recording again changed a resolved finding: %+v", f)
	}
	if got := fmt.Sprint(listRecon(t, s, false, "", "", 0)); got != "[a/ledger/9223372036854775817 a/amount_mismatch/3 b/pending/5]" {
		t.Fatalf("open: %s", got)
	}
	if got := fmt.Sprint(listRecon(t, s, true, "a", recon.KindLedger, 1<<63|9)); got != "[a/amount_mismatch/3 b/pending/5 c/duplicate_payment/8]" {
		t.Fatalf("after a/ledger: %s", got)
	}
	if got := fmt.Sprint(listRecon(t, s, false, "b", recon.KindPending, 5)); got != "[]" {
		t.Fatalf("after the last open: %s", got)
	}
	closed := func() string {
		v := s.Snapshot()
		defer v.Close()
		var out []ReconClosedWindow
		if err := v.ReconClosed(func(c ReconClosedWindow) { out = append(out, c) }); err != nil {
			t.Fatal(err)
		}
		cp, _ := v.ReconCheckpoint()
		return fmt.Sprint(cp, out)
	}
	if got := closed(); got != "2 [{a 3 4} {b 5 6} {c 8 8}]" {
		t.Fatalf("closed windows: %s", got)
	}
	if _, err := s.CommitRecon(ReconWrite{Checkpoint: 6, Now: 13}); err != nil {
		t.Fatal(err)
	}
	if got := closed(); got != "6 [{c 8 8}]" {
		t.Fatalf("closed windows past checkpoint 6: %s", got)
	}
}

// TestCommitReconSettles: a matched window resolves its biz id's earlier open pending and
// not_final findings whose orders it holds (recorded before or in the same write), and no
// other.
func TestCommitReconSettles(t *testing.T) {
	s := openRecon(t)
	if _, err := s.CommitRecon(ReconWrite{Now: 1, Findings: []recon.Finding{
		{BizID: "a", Kind: recon.KindPending, First: 3, Orders: []uint64{7}},
		{BizID: "a", Kind: recon.KindNotFinal, First: 4, Orders: []uint64{7, 8}},
		{BizID: "a", Kind: recon.KindAmount, First: 3, Orders: []uint64{7}},
		{BizID: "b", Kind: recon.KindPending, First: 3, Orders: []uint64{7}},
	}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.CommitRecon(ReconWrite{Now: 2,
		Findings: []recon.Finding{{BizID: "a", Kind: recon.KindPending, First: 10, Orders: []uint64{9}}},
		Settled: []ReconSettled{{BizID: "a", First: 20, Closed: 25, Orders: []uint64{7, 9}},
			{BizID: "b", First: 2, Closed: 2, Orders: []uint64{7}}}}) // b's window is earlier: not settled
	if err != nil || n.Settled != 2 || n.Recorded != 1 {
		t.Fatalf("committed %+v, %v", n, err)
	}
	if got := fmt.Sprint(listRecon(t, s, false, "", "", 0)); got != "[a/not_final/4 a/amount_mismatch/3 b/pending/3]" {
		t.Fatalf("open: %s", got)
	}
	for _, k := range []struct {
		kind  recon.Kind
		first uint64
	}{{recon.KindPending, 3}, {recon.KindPending, 10}} {
		f, _, _ := s.Live().ReconFinding("a", k.kind, k.first)
		if !f.Resolved || f.Note != "settled at sequence 25" || f.Updated != 2 {
			t.Fatalf("%+v", f)
		}
	}
}
