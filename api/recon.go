package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Limits of the reconciliation findings' API (units last).
const (
	// ReconFindingPageMax is the most findings one ListReconFindings page may ask for.
	ReconFindingPageMax = OrderPageMax
	// ReconFindingPageDefault is the page size when a request's limit is 0.
	ReconFindingPageDefault = OrderPageDefault
	// ReconNoteBytesMax is the longest note ResolveReconFinding takes.
	ReconNoteBytesMax = storage.ReconNoteBytesMax
)

// ReconEngine serves the findings of near-real-time reconciliation from the store; a
// PaymentEngine that is not one answers their calls UNIMPLEMENTED.
type ReconEngine interface {
	// ReconFindings lists at most limit findings (resolved ones too with includeResolved),
	// durable, in key order after (biz, kind, first) (biz empty: from the first).
	ReconFindings(includeResolved bool, biz string, kind recon.Kind, first uint64, limit int) ([]*storage.ReconFinding, error)
	// ResolveReconFinding resolves a finding with a note; its errors are
	// storage.ErrReconFindingNotFound and storage.ErrReconFindingResolved, nothing written.
	ResolveReconFinding(biz string, kind recon.Kind, first uint64, note string) (*storage.ReconFinding, error)
}

// reconKinds are the wire's finding kinds and the matcher's (the wire numbers are fixed; the
// matcher's names are what the store keys hold).
var reconKinds = map[ledgerv1.ReconFindingKind]recon.Kind{
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_LEDGER:            recon.KindLedger,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_DUPLICATE_PAYMENT: recon.KindDuplicate,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_AMOUNT_MISMATCH:   recon.KindAmount,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_STATUS_CONFLICT:   recon.KindStatus,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_SETTLE_REFUSED:    recon.KindSettleRefused,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_NOT_FINAL:         recon.KindNotFinal,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_PENDING:           recon.KindPending,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_OVERFLOW:          recon.KindOverflow,
	ledgerv1.ReconFindingKind_RECON_FINDING_KIND_UNVERIFIABLE:      recon.KindUnverifiable,
}

// ReconKindToProto is the wire's kind of a matcher's kind (UNSPECIFIED for one it does not
// know).
func ReconKindToProto(k recon.Kind) ledgerv1.ReconFindingKind {
	for w, m := range reconKinds {
		if m == k {
			return w
		}
	}
	return ledgerv1.ReconFindingKind_RECON_FINDING_KIND_UNSPECIFIED
}

// ReconKindFromProto is the matcher's kind of a wire kind; false for UNSPECIFIED or a number
// the wire does not define.
func ReconKindFromProto(k ledgerv1.ReconFindingKind) (recon.Kind, bool) {
	m, ok := reconKinds[k]
	return m, ok
}

// ReconDifferenceToProto translates a difference to the wire.
func ReconDifferenceToProto(d *payment.Difference) *ledgerv1.ReconDifference {
	return &ledgerv1.ReconDifference{Kind: string(d.Kind), OrderId: d.Order, Step: uint32(max(d.Step, 0)),
		TransferId: d.Transfer, Expected: d.Expected, Found: d.Found}
}

// ReconDifferenceFromProto translates a wire difference into the domain's.
func ReconDifferenceFromProto(d *ledgerv1.ReconDifference) payment.Difference {
	return payment.Difference{Kind: payment.DiffKind(d.GetKind()), Order: d.GetOrderId(), Step: int(d.GetStep()),
		Transfer: d.GetTransferId(), Expected: d.GetExpected(), Found: d.GetFound()}
}

// ReconFindingToProto translates a recorded finding to the wire.
func ReconFindingToProto(f *storage.ReconFinding) *ledgerv1.ReconFinding {
	out := &ledgerv1.ReconFinding{Key: &ledgerv1.ReconFindingKey{BizId: f.BizID, Kind: ReconKindToProto(f.Kind),
		FirstSequence: f.First}, ClosedSequence: f.Closed, OrderIds: f.Orders, MoreDifferences: uint32(max(f.More, 0)),
		State: ledgerv1.ReconFindingState_RECON_FINDING_STATE_OPEN, Note: f.Note, Created: f.Created,
		Updated: f.Updated}
	if f.Resolved {
		out.State = ledgerv1.ReconFindingState_RECON_FINDING_STATE_RESOLVED
	}
	for i := range f.Differences {
		out.Differences = append(out.Differences, ReconDifferenceToProto(&f.Differences[i]))
	}
	return out
}

func (s *PaymentService) recon() (ReconEngine, error) {
	re, ok := s.engine.(ReconEngine)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this server does not keep reconciliation findings")
	}
	return re, nil
}

// reconKey checks a finding's key from the wire.
func reconKey(field string, k *ledgerv1.ReconFindingKey) (biz string, kind recon.Kind, first uint64, err error) {
	biz = k.GetBizId()
	switch {
	case biz == "":
		return "", "", 0, invalid("%s.biz_id is required", field)
	case len(biz) > ledger.BizIDBytesMax:
		return "", "", 0, invalid("%s.biz_id: %d bytes; at most %d", field, len(biz), ledger.BizIDBytesMax)
	}
	kind, ok := ReconKindFromProto(k.GetKind())
	if !ok {
		return "", "", 0, invalid("%s.kind: unknown finding kind %d", field, int32(k.GetKind()))
	}
	return biz, kind, k.GetFirstSequence(), nil
}

// ListReconFindings implements PaymentService. It reads one finding past the page to tell
// whether another page follows.
func (s *PaymentService) ListReconFindings(_ context.Context, req *ledgerv1.ListReconFindingsRequest) (*ledgerv1.ListReconFindingsResponse, error) {
	re, err := s.recon()
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.GetLimit())
	if err != nil {
		return nil, toStatus(err)
	}
	var biz string
	var kind recon.Kind
	var first uint64
	if req.GetAfter() != nil {
		if biz, kind, first, err = reconKey("after", req.GetAfter()); err != nil {
			return nil, toStatus(err)
		}
	}
	fs, err := re.ReconFindings(req.GetIncludeResolved(), biz, kind, first, limit+1)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.ListReconFindingsResponse{}
	for i, f := range fs {
		if i == limit {
			resp.NextAfter = resp.Findings[limit-1].GetKey()
			break
		}
		resp.Findings = append(resp.Findings, ReconFindingToProto(f))
	}
	return resp, nil
}

// ResolveReconFinding implements PaymentService.
func (s *PaymentService) ResolveReconFinding(_ context.Context, req *ledgerv1.ResolveReconFindingRequest) (*ledgerv1.ResolveReconFindingResponse, error) {
	re, err := s.recon()
	if err != nil {
		return nil, err
	}
	if req.GetKey() == nil {
		return nil, toStatus(invalid("key is required"))
	}
	biz, kind, first, err := reconKey("key", req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	note := req.GetNote()
	if len(note) > ReconNoteBytesMax {
		return nil, toStatus(invalid("note: %d bytes; at most %d", len(note), ReconNoteBytesMax))
	}
	if !payment.Printable(note) {
		return nil, toStatus(invalid("note: not printable UTF-8 (control characters)"))
	}
	f, err := re.ResolveReconFinding(biz, kind, first, note)
	if err != nil {
		return nil, toStatus(err)
	}
	return &ledgerv1.ResolveReconFindingResponse{Finding: ReconFindingToProto(f)}, nil
}
