package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// reconFixture serves the real payment engine on an embedded store (no channel, no
// reconciliation running: findings are written the way the runner writes them, through
// storage.CommitRecon).
type reconFixture struct {
	store  *storage.Store
	client ledgerv1.PaymentServiceClient
	ctx    context.Context
}

const reconNow = 1_700_000_000_000_000_000

func newReconFixture(t *testing.T) *reconFixture {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := payments.Start(store, l, payments.Config{Setup: setup, Now: func() uint64 { return reconNow + 5 },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := NewServer(NewService(l, nil))
	RegisterPayments(srv, Payments(e), nil)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		_ = e.Stop(context.Background())
		l.Stop()
		_ = store.Close()
	})
	return &reconFixture{store: store, client: ledgerv1.NewPaymentServiceClient(conn), ctx: context.Background()}
}

func (f *reconFixture) list(t *testing.T, req *ledgerv1.ListReconFindingsRequest) *ledgerv1.ListReconFindingsResponse {
	t.Helper()
	resp, err := f.client.ListReconFindings(f.ctx, req)
	if err != nil {
		t.Fatalf("ListReconFindings(%v): %v", req, err)
	}
	return resp
}

// keys are the findings' keys as "biz/kind/first".
func keys(fs []*ledgerv1.ReconFinding) []string {
	var out []string
	for _, f := range fs {
		k := f.GetKey()
		out = append(out, fmt.Sprintf("%s/%s/%d", k.GetBizId(), enumSuffix(k.GetKind().String()), k.GetFirstSequence()))
	}
	return out
}

func enumSuffix(s string) string {
	return strings.ToLower(strings.TrimPrefix(s, "RECON_FINDING_KIND_"))
}

// TestReconFindingsAPI: findings recorded by storage.CommitRecon are listed a page at a time
// (no finding skipped or repeated across pages, next_after unset at the end), with every field
// on the wire; resolving one records the note and hides it from the default list; resolving it
// again is FAILED_PRECONDITION, an unknown finding NOT_FOUND, bad input INVALID_ARGUMENT, and
// none of those changes anything.
func TestReconFindingsAPI(t *testing.T) {
	f := newReconFixture(t)
	if resp := f.list(t, &ledgerv1.ListReconFindingsRequest{IncludeResolved: true}); len(resp.GetFindings()) != 0 || resp.GetNextAfter() != nil {
		t.Fatalf("no finding recorded: %v", resp)
	}
	diff := payment.Difference{Kind: payment.DiffUnmatched, Order: 0, Transfer: 99, Expected: "a transfer of a payment order",
		Found: "a transfer with no order's id: 99 debit=1 credit=2 amount=500"}
	var write []recon.Finding
	for i := range 7 {
		write = append(write, recon.Finding{BizID: fmt.Sprintf("biz-%d", i), Kind: recon.KindLedger, First: uint64(10 * (i + 1)),
			Closed: uint64(10*(i+1) + 3), Orders: []uint64{uint64(i + 1)}, Differences: []payment.Difference{diff}, More: i})
	}
	write = append(write, recon.Finding{BizID: "biz-3", Kind: recon.KindAmount, First: 40, Closed: 43, Orders: []uint64{4},
		Differences: []payment.Difference{{Kind: payment.DiffChannel, Order: 4, Expected: "the channel moving the order's 100",
			Found: "exception 0 amount_mismatch: txn T1 amount 90 (open)"}}})
	if n, err := f.store.CommitRecon(storage.ReconWrite{Findings: write, Checkpoint: 80, Now: reconNow}); err != nil || n.Recorded != len(write) {
		t.Fatalf("CommitRecon: %d %v", n, err)
	}

	// Every field of one finding.
	all := f.list(t, &ledgerv1.ListReconFindingsRequest{})
	want := &ledgerv1.ReconFinding{Key: &ledgerv1.ReconFindingKey{BizId: "biz-2", Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_LEDGER,
		FirstSequence: 30}, ClosedSequence: 33, OrderIds: []uint64{3}, Differences: []*ledgerv1.ReconDifference{{Kind: "unmatched",
		TransferId: 99, Expected: diff.Expected, Found: diff.Found}}, MoreDifferences: 2,
		State: ledgerv1.ReconFindingState_RECON_FINDING_STATE_OPEN, Created: reconNow, Updated: reconNow}
	if len(all.GetFindings()) != len(write) || !proto.Equal(all.GetFindings()[2], want) || all.GetNextAfter() != nil {
		t.Fatalf("list all: %v\nwant [2] = %v", all, want)
	}
	wantKeys := keys(all.GetFindings())
	if got := strings.Join(wantKeys, " "); got != "biz-0/ledger/10 biz-1/ledger/20 biz-2/ledger/30 biz-3/ledger/40 biz-3/amount_mismatch/40 biz-4/ledger/50 biz-5/ledger/60 biz-6/ledger/70" {
		t.Fatalf("order: %s", got)
	}

	// Pages of 3: every finding once, the last page's next_after unset.
	page := func(resolved bool, limit uint32) []string {
		var got []string
		var after *ledgerv1.ReconFindingKey
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			resp := f.list(t, &ledgerv1.ListReconFindingsRequest{IncludeResolved: resolved, After: after, Limit: limit})
			if len(resp.GetFindings()) > int(limit) {
				t.Fatalf("page of %d with limit %d", len(resp.GetFindings()), limit)
			}
			got = append(got, keys(resp.GetFindings())...)
			if after = resp.GetNextAfter(); after == nil {
				return got
			}
			if len(resp.GetFindings()) != int(limit) {
				t.Fatalf("a page of %d (limit %d) says more follow", len(resp.GetFindings()), limit)
			}
		}
	}
	for _, limit := range []uint32{1, 3, 4, 8, 1000} {
		if got := page(false, limit); strings.Join(got, " ") != strings.Join(wantKeys, " ") {
			t.Fatalf("pages of %d: %v", limit, got)
		}
	}

	// Resolve one: durable with its note and time; gone from the default list, in the full one.
	key := &ledgerv1.ReconFindingKey{BizId: "biz-3", Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_AMOUNT_MISMATCH, FirstSequence: 40}
	resp, err := f.client.ResolveReconFinding(f.ctx, &ledgerv1.ResolveReconFindingRequest{Key: key, Note: "refunded 10 by hand, ticket 77"})
	if err != nil || resp.GetFinding().GetState() != ledgerv1.ReconFindingState_RECON_FINDING_STATE_RESOLVED ||
		resp.GetFinding().GetNote() != "refunded 10 by hand, ticket 77" || resp.GetFinding().GetUpdated() != reconNow+5 ||
		resp.GetFinding().GetCreated() != reconNow || !proto.Equal(resp.GetFinding().GetKey(), key) {
		t.Fatalf("resolve: %v %v", resp, err)
	}
	open := page(false, 3)
	if len(open) != len(wantKeys)-1 || strings.Contains(strings.Join(open, " "), "amount_mismatch") {
		t.Fatalf("open after resolving: %v", open)
	}
	if got := page(true, 3); strings.Join(got, " ") != strings.Join(wantKeys, " ") {
		t.Fatalf("all after resolving: %v", got)
	}
	// A cursor naming the resolved finding still pages on from it.
	if got := keys(f.list(t, &ledgerv1.ListReconFindingsRequest{After: key, Limit: 1}).GetFindings()); len(got) != 1 || got[0] != "biz-4/ledger/50" {
		t.Fatalf("after the resolved finding: %v", got)
	}

	// Errors: nothing written.
	before := f.list(t, &ledgerv1.ListReconFindingsRequest{IncludeResolved: true})
	for name, tc := range map[string]struct {
		req  *ledgerv1.ResolveReconFindingRequest
		code codes.Code
	}{
		"twice":        {&ledgerv1.ResolveReconFindingRequest{Key: key, Note: "again"}, codes.FailedPrecondition},
		"unknown":      {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-3", Kind: key.Kind, FirstSequence: 41}}, codes.NotFound},
		"unknown biz":  {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "nope", Kind: key.Kind, FirstSequence: 40}}, codes.NotFound},
		"no key":       {&ledgerv1.ResolveReconFindingRequest{Note: "x"}, codes.InvalidArgument},
		"no biz":       {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{Kind: key.Kind, FirstSequence: 40}}, codes.InvalidArgument},
		"long biz":     {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: strings.Repeat("b", 65), Kind: key.Kind}}, codes.InvalidArgument},
		"no kind":      {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-1", FirstSequence: 20}}, codes.InvalidArgument},
		"unknown kind": {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-1", Kind: 99, FirstSequence: 20}}, codes.InvalidArgument},
		"long note": {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-1",
			Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_LEDGER, FirstSequence: 20}, Note: strings.Repeat("n", ReconNoteBytesMax+1)}, codes.InvalidArgument},
		"control note": {&ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-1",
			Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_LEDGER, FirstSequence: 20}, Note: "ok\x1b[31m"}, codes.InvalidArgument},
	} {
		if _, err := f.client.ResolveReconFinding(f.ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
	for name, req := range map[string]*ledgerv1.ListReconFindingsRequest{
		"limit":        {Limit: ReconFindingPageMax + 1},
		"after no biz": {After: &ledgerv1.ReconFindingKey{Kind: key.Kind}},
		"after kind":   {After: &ledgerv1.ReconFindingKey{BizId: "biz-1"}},
	} {
		if _, err := f.client.ListReconFindings(f.ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("list %s: %v, want InvalidArgument", name, err)
		}
	}
	if after := f.list(t, &ledgerv1.ListReconFindingsRequest{IncludeResolved: true}); !proto.Equal(after, before) {
		t.Fatalf("refused calls changed the findings:\n%v\n%v", before, after)
	}
	// The note's limit is inclusive.
	if _, err := f.client.ResolveReconFinding(f.ctx, &ledgerv1.ResolveReconFindingRequest{Key: &ledgerv1.ReconFindingKey{BizId: "biz-1",
		Kind: ledgerv1.ReconFindingKind_RECON_FINDING_KIND_LEDGER, FirstSequence: 20}, Note: strings.Repeat("n", ReconNoteBytesMax)}); err != nil {
		t.Fatalf("a note of %d bytes: %v", ReconNoteBytesMax, err)
	}
}

// TestReconKindsMapped: every matcher kind has its wire kind and back.
func TestReconKindsMapped(t *testing.T) {
	for _, k := range recon.Kinds {
		w := ReconKindToProto(k)
		if back, ok := ReconKindFromProto(w); !ok || back != k || enumSuffix(w.String()) != string(k) {
			t.Errorf("%s: wire %v, back %q %v", k, w, back, ok)
		}
	}
	if len(reconKinds) != len(recon.Kinds) || len(ledgerv1.ReconFindingKind_name) != len(recon.Kinds)+1 {
		t.Errorf("%d wire kinds, %d matcher kinds", len(reconKinds), len(recon.Kinds))
	}
}
