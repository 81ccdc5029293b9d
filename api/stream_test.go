package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage/storagetest"
)

// outcome is a request's answer as text: "code: message" when refused whole, else each
// transfer's result name in request order.
func outcomeOf(code codes.Code, msg string, n int, rs []*ledgerv1.CreateTransfersResult) string {
	if code != codes.OK {
		return code.String() + ": " + msg
	}
	out := make([]string, n)
	for i := range out {
		out[i] = "ok"
	}
	for _, r := range rs {
		out[r.GetIndex()] = strings.ToLower(strings.TrimPrefix(r.GetResult().String(), "CREATE_TRANSFER_RESULT_"))
	}
	return strings.Join(out, " ")
}

func (f *fixture) unaryOutcome(t *testing.T, ts []*ledgerv1.Transfer) string {
	t.Helper()
	resp, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: ts})
	st, _ := status.FromError(err)
	return outcomeOf(st.Code(), st.Message(), len(ts), resp.GetResults())
}

// streamOutcome sends one request on stream and waits for its answer (the only one awaited).
func streamOutcome(t *testing.T, stream ledgerv1.LedgerService_CreateTransfersStreamClient, tag uint64, ts []*ledgerv1.Transfer) string {
	t.Helper()
	if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: tag, Transfers: ts}); err != nil {
		t.Fatalf("send %d: %v", tag, err)
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.GetAnswers()) != 1 || resp.GetAnswers()[0].GetTag() != tag {
		t.Fatalf("answer to %d: %v %v", tag, resp, err)
	}
	a := resp.GetAnswers()[0]
	return outcomeOf(codes.Code(a.GetCode()), a.GetMessage(), len(ts), a.GetResults())
}

// TestStreamAnswersAsCreateTransfers: every request sent on a stream is answered as the same
// request sent to CreateTransfers on a ledger in the same state: results, refusals of the
// whole request (the stream going on after them), open and failing chains, and the balances
// after.
func TestStreamAnswersAsCreateTransfers(t *testing.T) {
	unary, streamed := newFixture(t, 2), newFixture(t, 2)
	for _, f := range []*fixture{unary, streamed} {
		f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1},
			&ledgerv1.Account{Id: 3, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{DebitsMustNotExceedCredits: true}})
	}
	linked := func(t *ledgerv1.Transfer) *ledgerv1.Transfer {
		t.Flags = &ledgerv1.TransferFlags{Linked: true}
		return t
	}
	pending := tr(30, 1, 2, 9)
	pending.Flags = &ledgerv1.TransferFlags{Pending: true}
	post := &ledgerv1.Transfer{Id: 31, PendingId: 30, DebitAccountId: 1, CreditAccountId: 2, Ledger: 1, Code: 1, Amount: 9,
		Flags: &ledgerv1.TransferFlags{PostPending: true}}
	tooMany := make([]*ledgerv1.Transfer, 8191)
	for i := range tooMany {
		tooMany[i] = tr(uint64(1000+i), 1, 2, 1)
	}
	requests := []struct {
		name string
		ts   []*ledgerv1.Transfer
		want string
	}{
		{"one", []*ledgerv1.Transfer{tr(1, 1, 2, 5)}, "ok"},
		{"again", []*ledgerv1.Transfer{tr(1, 1, 2, 5)}, "exists"},
		{"same id, other amount", []*ledgerv1.Transfer{tr(1, 1, 2, 6)}, "exists_with_different_fields"},
		{"no such account", []*ledgerv1.Transfer{tr(2, 1, 99, 5)}, "credit_account_not_found"},
		{"overdraft", []*ledgerv1.Transfer{tr(3, 3, 1, 5)}, "exceeds_credits"},
		{"several", []*ledgerv1.Transfer{tr(4, 1, 2, 1), tr(5, 2, 1, 2), tr(6, 2, 99, 1)}, "ok ok credit_account_not_found"},
		{"empty", nil, "InvalidArgument: invalid request: no transfers"},
		{"reserved id", []*ledgerv1.Transfer{tr(1<<63, 1, 2, 1)},
			"InvalidArgument: invalid request: transfers[0].id: ids from 2^63 are reserved for the payment layer's transfers"},
		{"too many", tooMany, "InvalidArgument: invalid request: 8191 transfers; at most 8190 per request"},
		{"after a refusal", []*ledgerv1.Transfer{tr(7, 1, 2, 1)}, "ok"},
		{"open chain", []*ledgerv1.Transfer{linked(tr(8, 1, 2, 1)), linked(tr(9, 1, 2, 1))},
			"linked_event_failed linked_event_chain_open"},
		{"open chain over shards", []*ledgerv1.Transfer{linked(tr(8, 1, 2, 1)), linked(tr(9, 2, 1, 1))},
			"linked_event_failed linked_chain_spans_shards"},
		{"closed then open", []*ledgerv1.Transfer{linked(tr(10, 1, 2, 1)), tr(11, 1, 2, 1), linked(tr(12, 1, 2, 1))},
			"ok ok linked_event_chain_open"},
		{"failing chain", []*ledgerv1.Transfer{linked(tr(13, 1, 2, 1)), tr(14, 3, 1, 1)},
			"linked_event_failed exceeds_credits"},
		{"pending", []*ledgerv1.Transfer{pending}, "ok"},
		{"post", []*ledgerv1.Transfer{post}, "ok"},
	}
	stream, err := streamed.client.CreateTransfersStream(streamed.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range requests {
		u := unary.unaryOutcome(t, r.ts)
		s := streamOutcome(t, stream, uint64(100+i), r.ts)
		if u != r.want || s != r.want {
			t.Errorf("%s: CreateTransfers %q, stream %q; want %q", r.name, u, s, r.want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v %v; want the stream's end", resp, err)
	}
	for id := uint64(1); id <= 3; id++ {
		u, s := unary.balance(t, id), streamed.balance(t, id)
		if fmt.Sprint(u.GetDebitsPosted(), u.GetCreditsPosted()) != fmt.Sprint(s.GetDebitsPosted(), s.GetCreditsPosted()) {
			t.Errorf("account %d: CreateTransfers left %v/%v, the stream %v/%v", id,
				u.GetDebitsPosted(), u.GetCreditsPosted(), s.GetDebitsPosted(), s.GetCreditsPosted())
		}
	}
}

// eachAnswer reads stream's answers until it ends, calling fn on each: how many, and the
// first error (fn's, or the stream's other than its clean end).
func eachAnswer(stream ledgerv1.LedgerService_CreateTransfersStreamClient, fn func(*ledgerv1.CreateTransfersStreamAnswer) error) (int, error) {
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		for _, a := range resp.GetAnswers() {
			n++
			if err := fn(a); err != nil {
				return n, err
			}
		}
	}
}

// stalledRequests stalls the disk and sends n one-transfer requests (tags 0 to n-1, ids 1 to
// n), returning once the gatherer holds them all: taken, at the ledger or queued for it.
func stalledRequests(t *testing.T, f *fixture, fs *storagetest.StallFS, stream ledgerv1.LedgerService_CreateTransfersStreamClient, n int) {
	t.Helper()
	fs.Stall()
	for i := range n {
		if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: uint64(i), Transfers: []*ledgerv1.Transfer{tr(uint64(i+1), 1, 2, 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); f.service.gather.busy() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gatherer holds %d of %d requests", f.service.gather.busy(), n)
		}
	}
}

// stallFixture is a one-shard fixture on a disk that can stall, with accounts 1 and 2.
func stallFixture(t *testing.T) (*fixture, *storagetest.StallFS) {
	fs := storagetest.NewStallFS(vfs.NewMem())
	f := newFixtureOn(t, fs, actors.Config{Shards: 1})
	t.Cleanup(fs.Resume)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	return f, fs
}

// openStream opens a CreateTransfersStream.
func (f *fixture) openStream(t *testing.T) ledgerv1.LedgerService_CreateTransfersStreamClient {
	t.Helper()
	stream, err := f.client.CreateTransfersStream(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// TestStreamManyCallers: callers on four streams each send one transfer per request without
// waiting; every request is answered once, by its tag, every transfer answered ok is booked
// (the balances add up to exactly the answered transfers), and the requests went to the
// ledger gathered, in fewer batches than requests.
func TestStreamManyCallers(t *testing.T) {
	f := newFixture(t, 2)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	const streams, perStream = 4, 3000
	seen := make([][]bool, streams)
	for i := range seen {
		seen[i] = make([]bool, perStream)
	}
	runStreams(t, f, streams, perStream, func(s, i int) *ledgerv1.CreateTransfersStreamRequest {
		id := uint64(s*perStream + i + 1) // one transfer per request, tagged with its id
		return &ledgerv1.CreateTransfersStreamRequest{Tag: id, Transfers: []*ledgerv1.Transfer{tr(id, 1, 2, id%7+1)}}
	}, func(s int, a *ledgerv1.CreateTransfersStreamAnswer) error { // every tag once, all ok
		i := int(a.GetTag()) - s*perStream - 1
		if i < 0 || i >= perStream || seen[s][i] || a.GetCode() != 0 || len(a.GetResults()) > 0 {
			return fmt.Errorf("stream %d: unexpected answer %v", s, a)
		}
		seen[s][i] = true
		return nil
	})
	var want uint64
	for id := uint64(1); id <= streams*perStream; id++ {
		want += id%7 + 1
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); got != want {
		t.Fatalf("account 2 has %d credited; the answered transfers make %d", got, want)
	}
	var batches dto.Metric
	if err := f.metrics.streamBatch.Write(&batches); err != nil {
		t.Fatal(err)
	}
	h := batches.GetHistogram()
	if h.GetSampleSum() != streams*perStream || h.GetSampleCount() >= streams*perStream/4 {
		t.Fatalf("%v requests in %d batches; want %d requests in fewer than %d", h.GetSampleSum(), h.GetSampleCount(),
			streams*perStream, streams*perStream/4)
	}
}

// TestStreamAnswersOnceDurable: while the disk stalls the round that holds a stream's
// request, the request is not answered; once the sync returns it is, ok.
func TestStreamAnswersOnceDurable(t *testing.T) {
	f, fs := stallFixture(t)
	stream := f.openStream(t)
	fs.Stall()
	if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: 7, Transfers: []*ledgerv1.Transfer{tr(7, 1, 2, 5)}}); err != nil {
		t.Fatal(err)
	}
	answered := make(chan *ledgerv1.CreateTransfersStreamResponse, 1)
	go func() {
		resp, _ := stream.Recv()
		answered <- resp
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found, _ := f.store.Live().Transfer(7); found {
			break // booked in Pebble, its WAL sync stalled
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled round never became visible")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case resp := <-answered:
		t.Fatalf("answered %v before the round was durable", resp)
	case <-time.After(100 * time.Millisecond):
	}
	fs.Resume()
	select {
	case resp := <-answered:
		if a := resp.GetAnswers(); len(a) != 1 || a[0].GetTag() != 7 || a[0].GetCode() != 0 || len(a[0].GetResults()) > 0 {
			t.Fatalf("answer %v; want tag 7 ok", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer once durable")
	}
	_ = stream.CloseSend()
}

// TestStreamQueueLimit: three streams send requests of 2,000 transfers without waiting while
// the disk stalls, more than the batches at the ledger and the shared queue hold: the queue
// fills to StreamQueuedTransfersMax and no further (the readers wait), and once the disk is
// back every request is answered once, all booked. (One stream could not fill it: its own
// room is as large.)
func TestStreamQueueLimit(t *testing.T) {
	f, fs := stallFixture(t)
	const streams, requests, per = 3, 20, 2000
	fs.Stall()
	var wg sync.WaitGroup
	answered := make([][]uint64, streams)
	errs := make(chan error, streams)
	for s := range streams {
		stream, err := f.client.CreateTransfersStream(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for i := range requests {
				ts := make([]*ledgerv1.Transfer, per)
				for k := range ts {
					ts[k] = tr(uint64((s*requests+i)*per+k+1), 1, 2, 1)
				}
				if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: uint64(i), Transfers: ts}); err != nil {
					return
				}
			}
			_ = stream.CloseSend()
		}()
		wg.Go(func() {
			_, err := eachAnswer(stream, func(a *ledgerv1.CreateTransfersStreamAnswer) error {
				if a.GetCode() != 0 || len(a.GetResults()) > 0 {
					return fmt.Errorf("stream %d: answer %v", s, a)
				}
				answered[s] = append(answered[s], a.GetTag())
				return nil
			})
			if err != nil {
				errs <- err
			}
		})
	}
	queued := func() int {
		f.service.gather.mu.Lock()
		defer f.service.gather.mu.Unlock()
		return f.service.gather.queued
	}
	most := 0
	for deadline := time.Now().Add(10 * time.Second); most+per <= StreamQueuedTransfersMax && time.Now().Before(deadline); {
		most = max(most, queued())
		time.Sleep(time.Millisecond)
	}
	for range 100 { // the readers keep trying while the disk stalls
		most = max(most, queued())
		time.Sleep(time.Millisecond)
	}
	if most+per <= StreamQueuedTransfersMax || most > StreamQueuedTransfersMax {
		t.Errorf("the queue held at most %d transfers; want it full, within %d", most, StreamQueuedTransfersMax)
	}
	fs.Resume()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for s, tags := range answered {
		slices.Sort(tags)
		if len(tags) != requests || len(slices.Compact(tags)) != requests {
			t.Errorf("stream %d: answered tags %v; want 0 to %d once each", s, tags, requests-1)
		}
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); got != streams*requests*per {
		t.Fatalf("credited %d; want %d", got, streams*requests*per)
	}
}

// TestTakeEndsBatchAtOpenChain: a gathered batch ends after a request that ends inside a
// linked chain (the chain must fail open, not run on into the next request's transfers) and
// before the request that would take it past ledger.BatchEventsMax transfers.
func TestTakeEndsBatchAtOpenChain(t *testing.T) {
	item := func(n int, open bool) *streamItem {
		it := &streamItem{ts: make([]ledger.Transfer, n), n: n}
		if open {
			it.ts[n-1].Flags = ledger.TransferLinked
		}
		return it
	}
	a, b, c, d, e := item(2, false), item(3, true), item(1, false), item(ledger.BatchEventsMax, false), item(1, false)
	g := &gatherer{queue: []*streamItem{a, b, c, d, e}, queued: 2 + 3 + 1 + ledger.BatchEventsMax + 1}
	for _, want := range [][]*streamItem{{a, b}, {c}, {d}, {e}} {
		if got := g.take(); !slices.Equal(got, want) {
			t.Fatalf("batch of %d requests; want %d", len(got), len(want))
		}
	}
	if len(g.queue) != 0 || g.queued != 0 {
		t.Fatalf("left %d requests, %d transfers queued", len(g.queue), g.queued)
	}
}

// TestStreamGatheredResultsByRequest: requests gathered into shared batches are each
// answered with their own transfers' results, at their own indexes: every request mixes
// transfers that succeed with some that fail (no account 99) in a pattern of its tag, and
// every answer must list exactly its request's failures. (From the review: answering each
// request with the batch's first results instead passed every other test.)
func TestStreamGatheredResultsByRequest(t *testing.T) {
	f := newFixture(t, 2)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	const streams, perStream = 4, 400
	fails := func(tag uint64, j int) bool { return (tag+uint64(j))%3 == 0 }
	size := func(tag uint64) int { return int(tag%5) + 1 }
	runStreams(t, f, streams, perStream, func(s, i int) *ledgerv1.CreateTransfersStreamRequest {
		tag := uint64(s*perStream + i)
		ts := make([]*ledgerv1.Transfer, size(tag))
		for j := range ts {
			credit := uint64(2)
			if fails(tag, j) {
				credit = 99
			}
			ts[j] = tr(tag*8+uint64(j)+1, 1, credit, 1)
		}
		return &ledgerv1.CreateTransfersStreamRequest{Tag: tag, Transfers: ts}
	}, func(_ int, a *ledgerv1.CreateTransfersStreamAnswer) error {
		tag := a.GetTag()
		var want, got []uint32
		for j := range size(tag) {
			if fails(tag, j) {
				want = append(want, uint32(j))
			}
		}
		for _, r := range a.GetResults() {
			if r.GetResult() != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_CREDIT_ACCOUNT_NOT_FOUND {
				return fmt.Errorf("tag %d: result %v", tag, r)
			}
			got = append(got, r.GetIndex())
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("tag %d: failures at %v; want %v", tag, got, want)
		}
		return nil
	})
}

// runStreams opens streams streams; on each, a sender sends request(s, i) for i below
// perStream without waiting and closes its side, while a receiver checks every answer and
// that the stream ends after exactly perStream of them.
func runStreams(t *testing.T, f *fixture, streams, perStream int,
	request func(s, i int) *ledgerv1.CreateTransfersStreamRequest,
	check func(s int, a *ledgerv1.CreateTransfersStreamAnswer) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for s := range streams {
		stream, err := f.client.CreateTransfersStream(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perStream {
				if err := stream.Send(request(s, i)); err != nil {
					errs <- fmt.Errorf("stream %d, request %d: %w", s, i, err)
					return
				}
			}
			if err := stream.CloseSend(); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			n, err := eachAnswer(stream, func(a *ledgerv1.CreateTransfersStreamAnswer) error { return check(s, a) })
			if err == nil && n != perStream {
				err = fmt.Errorf("stream %d ended after %d answers of %d", s, n, perStream)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// sentStream is a stream's server side that keeps what it is sent.
type sentStream struct {
	grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]
	sent []*ledgerv1.CreateTransfersStreamResponse
}

func (s *sentStream) Send(r *ledgerv1.CreateTransfersStreamResponse) error {
	s.sent = append(s.sent, r)
	return nil
}

// TestStreamResponseBounded: answers that list many results go out in responses that stop
// taking answers once StreamResultsPerResponseMax results are listed (from the review: 100
// answers of 8,190 EXISTS each, a retry's, made one response past a client's 4 MiB limit
// and broke its stream), and an answer's transfers are given back to the stream's room.
func TestStreamResponseBounded(t *testing.T) {
	rs := make([]*ledgerv1.CreateTransfersResult, ledger.BatchEventsMax)
	for i := range rs {
		rs[i] = &ledgerv1.CreateTransfersResult{Index: uint32(i), Result: ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_EXISTS}
	}
	ss := &sentStream{}
	ts := &transferStream{stream: ss, out: make(chan streamAnswer, StreamRequestsInFlightMax)}
	const answers = 100
	ts.requests, ts.transfers = answers, answers*ledger.BatchEventsMax
	for i := range answers {
		ts.out <- streamAnswer{a: &ledgerv1.CreateTransfersStreamAnswer{Tag: uint64(i), Results: rs[:ledger.BatchEventsMax-i]},
			n: ledger.BatchEventsMax}
	}
	for len(ts.out) > 0 {
		if err := ts.send(<-ts.out); err != nil {
			t.Fatal(err)
		}
	}
	tags := 0
	for _, r := range ss.sent {
		listed := 0
		for _, a := range r.GetAnswers() {
			listed += len(a.GetResults())
			tags++
		}
		if listed >= StreamResultsPerResponseMax+len(r.GetAnswers()[0].GetResults()) {
			t.Fatalf("a response of %d answers lists %d results", len(r.GetAnswers()), listed)
		}
		if b := proto.Size(r); b > 1<<20 {
			t.Fatalf("a response of %d bytes", b)
		}
	}
	if tags != answers || ts.requests != 0 || ts.transfers != 0 {
		t.Fatalf("%d answers sent, %d requests and %d transfers still held; want %d, 0, 0", tags, ts.requests, ts.transfers, answers)
	}
}

// TestStreamEndsOnStop: EndTransferStreams ends an idle stream at once (UNAVAILABLE), so that
// a graceful stop does not wait for its caller (from the review: GracefulStop waited for an
// idle stream until the drain timeout), and a new stream is refused.
func TestStreamEndsOnStop(t *testing.T) {
	f := newFixture(t, 1)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	stream, err := f.client.CreateTransfersStream(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := streamOutcome(t, stream, 1, []*ledgerv1.Transfer{tr(1, 1, 2, 1)}); got != "ok" {
		t.Fatalf("before the stop: %s", got)
	}
	f.service.EndTransferStreams()
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the stream ended with %v; want UNAVAILABLE", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle stream did not end on EndTransferStreams")
	}
	again, err := f.client.CreateTransfersStream(f.ctx)
	if err == nil {
		_, err = again.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a stream opened after the stop: %v; want UNAVAILABLE", err)
	}
}

// TestStreamAnswersTakenBeforeStop: requests the stream took before EndTransferStreams are
// all answered (and booked) before it ends; none is left without its answer.
func TestStreamAnswersTakenBeforeStop(t *testing.T) {
	f, fs := stallFixture(t)
	stream := f.openStream(t)
	const requests = 50
	stalledRequests(t, f, fs, stream, requests)
	f.service.EndTransferStreams()
	fs.Resume()
	answered, err := eachAnswer(stream, func(a *ledgerv1.CreateTransfersStreamAnswer) error {
		if a.GetCode() != 0 || len(a.GetResults()) > 0 {
			return fmt.Errorf("answer %v", a)
		}
		return nil
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream ended with %v; want UNAVAILABLE", err)
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); got != uint64(answered) || answered != requests {
		t.Fatalf("%d answered, %d booked; want all %d of the requests taken", answered, got, requests)
	}
}

// TestStreamRoomBounded: a stream takes requests while the unanswered ones hold at most
// StreamTransfersInFlightMax transfers; the next waits until an answer goes out, and none
// is taken once the server stops.
func TestStreamRoomBounded(t *testing.T) {
	ts := &transferStream{ctx: context.Background(), stream: &sentStream{}, out: make(chan streamAnswer, StreamRequestsInFlightMax)}
	for range StreamTransfersInFlightMax / ledger.BatchEventsMax {
		if !ts.takeRoom(ledger.BatchEventsMax) {
			t.Fatal("refused within the bound")
		}
	}
	took := make(chan bool, 1)
	go func() { took <- ts.takeRoom(1) }()
	select {
	case <-took:
		t.Fatalf("took a request past %d transfers", StreamTransfersInFlightMax)
	case <-time.After(50 * time.Millisecond):
	}
	if err := ts.send(streamAnswer{a: &ledgerv1.CreateTransfersStreamAnswer{}, n: ledger.BatchEventsMax}); err != nil {
		t.Fatal(err)
	}
	if !<-took {
		t.Fatal("not taken once an answer went out")
	}
	go func() { took <- ts.takeRoom(ledger.BatchEventsMax) }()
	time.Sleep(10 * time.Millisecond)
	ts.mu.Lock()
	ts.stopping = true
	ts.room.wake()
	ts.mu.Unlock()
	if <-took {
		t.Fatal("taken after the stop")
	}
	if ts.takeRoom(1) {
		t.Fatal("taken after the stop")
	}
}

// TestStreamStopWithRequestRead: a request the reader has read when the server stops is
// neither run nor answered, and the stream then ends UNAVAILABLE, not OK, so the caller
// knows to send it again (from the review: it ended OK, the request silently dropped).
func TestStreamStopWithRequestRead(t *testing.T) {
	f, fs := stallFixture(t)
	stream := f.openStream(t)
	const requests = 5
	stalledRequests(t, f, fs, stream, requests)
	f.service.EndTransferStreams()
	time.Sleep(50 * time.Millisecond) // the handler marks the stream stopping
	if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: 99, Transfers: []*ledgerv1.Transfer{tr(99, 1, 2, 1)}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	fs.Resume()
	answered, err := eachAnswer(stream, func(*ledgerv1.CreateTransfersStreamAnswer) error { return nil })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream ended with %v after %d answers to %d requests; want UNAVAILABLE", err, answered, requests+1)
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); answered != requests || got != requests {
		t.Fatalf("%d answered, %d booked; want the %d taken before the stop", answered, got, requests)
	}
}

// TestStreamMalformedRequestAnswered: bytes that are not a request are answered
// INVALID_ARGUMENT with the tag read before the fault, and the stream goes on: the requests
// taken before it keep their answers (from the review: the stream failed, and requests
// booked before it lost their answers).
func TestStreamMalformedRequestAnswered(t *testing.T) {
	f := newFixture(t, 1)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	stream, err := f.client.CreateTransfersStream(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: uint64(i), Transfers: []*ledgerv1.Transfer{tr(uint64(i+1), 1, 2, 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	bad := &ledgerv1.CreateTransfersStreamRequest{Tag: 100}
	raw := protowire.AppendTag(nil, fieldStreamTransfers, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{0xff}) // a truncated tag inside a transfer
	bad.ProtoReflect().SetUnknown(raw)
	if err := stream.Send(bad); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&ledgerv1.CreateTransfersStreamRequest{Tag: 6, Transfers: []*ledgerv1.Transfer{tr(6, 1, 2, 1)}}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	outcomes := map[uint64]string{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetAnswers() {
			outcomes[a.GetTag()] = outcomeOf(codes.Code(a.GetCode()), a.GetMessage(), 1, a.GetResults())
		}
	}
	if len(outcomes) != 7 || outcomes[6] != "ok" ||
		!strings.HasPrefix(outcomes[100], "InvalidArgument: invalid request: the request cannot be decoded") {
		t.Fatalf("answers %v; want tags 0-4 and 6 ok, 100 INVALID_ARGUMENT", outcomes)
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); got != 6 {
		t.Fatalf("%d booked; want 6", got)
	}
}

// TestCreateTransfersMalformedRefused: a CreateTransfers request whose bytes are no request
// (here a transfer cut short after a good one) is refused INVALID_ARGUMENT as a whole and
// books nothing; more than ledger.BatchEventsMax transfers are refused too, and a good request
// after them is booked, every field as sent.
func TestCreateTransfersMalformedRefused(t *testing.T) {
	f := newFixture(t, 1)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 1}, &ledgerv1.Account{Id: 2, Ledger: 1, Code: 1})
	bad := &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{tr(1, 1, 2, 5)}}
	raw := protowire.AppendTag(nil, fieldRequestTransfers, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{0xff}) // a truncated tag inside a transfer
	bad.ProtoReflect().SetUnknown(raw)
	_, err := f.client.CreateTransfers(f.ctx, bad)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "the request cannot be decoded") {
		t.Fatalf("a malformed request: %v; want INVALID_ARGUMENT, cannot be decoded", err)
	}
	many := make([]*ledgerv1.Transfer, ledger.BatchEventsMax+1)
	for i := range many {
		many[i] = tr(uint64(100+i), 1, 2, 1)
	}
	if _, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: many}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%d transfers: %v; want INVALID_ARGUMENT", len(many), err)
	}
	if got := small(f.balance(t, 2).GetCreditsPosted()); got != 0 {
		t.Fatalf("%d booked by refused requests; want 0", got)
	}
	good := tr(1, 1, 2, 5)
	good.BizId, good.UserData, good.Code = "订单-7", 99, 3
	resp, err := f.client.CreateTransfers(f.ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{good}})
	if err != nil || len(resp.GetResults()) != 0 {
		t.Fatalf("a good request after them: %v %v", resp, err)
	}
	got, err := f.client.LookupTransfers(f.ctx, &ledgerv1.LookupTransfersRequest{Ids: []uint64{1}})
	if err != nil || len(got.GetTransfers()) != 1 {
		t.Fatalf("lookup: %v %v", got, err)
	}
	g := got.GetTransfers()[0]
	if g.GetBizId() != "订单-7" || g.GetUserData() != 99 || g.GetCode() != 3 || small(f.balance(t, 2).GetCreditsPosted()) != 5 {
		t.Fatalf("booked %+v; want biz id 订单-7, user data 99, code 3, amount 5", g)
	}
}
