package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// fakeEngine is an in-memory PaymentEngine: orders by id and by key, built by a few of the
// domain's checks (not payment.New, which needs a chart), and channels by name. err, when
// set, is what every call answers.
type fakeEngine struct {
	mu       sync.Mutex
	err      error
	calls    int
	next     uint64
	orders   map[uint64]*payment.Order
	keys     map[string]uint64
	channels map[string]*ChannelStatus
	replies  func([]PaymentReply) []PaymentReply // tampers with Create's replies, when set
	recons   map[string]BizRecon                 // what Reconcile answers, by biz id
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{next: 1, orders: map[uint64]*payment.Order{}, keys: map[string]uint64{},
		channels: map[string]*ChannelStatus{"alipay": {Name: "alipay", Circuit: CircuitHalfOpen, InFlight: 3, Queued: 1},
			"bank": {Name: "bank"}}}
}

func (e *fakeEngine) enter() error {
	e.mu.Lock()
	e.calls++
	return e.err
}

func (e *fakeEngine) Create(reqs []payment.Request) ([]PaymentReply, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return nil, err
	}
	out := make([]PaymentReply, len(reqs))
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.Key == "":
			out[i].Result = payment.ResultKeyRequired
			continue
		case len(r.Key) > payment.KeyBytesMax:
			out[i].Result = payment.ResultKeyTooLong
			continue
		case r.Form < payment.Recharge || r.Form > payment.Pay:
			out[i].Result = payment.ResultFormUnknown
			continue
		case r.Amount == 0:
			out[i].Result = payment.ResultAmountMustNotBeZero
			continue
		}
		if id, ok := e.keys[r.Key]; ok {
			o := e.orders[id]
			if o.Same(r) {
				out[i] = PaymentReply{Result: payment.ResultExists, Order: o}
			} else {
				out[i].Result = payment.ResultKeyReused
			}
			continue
		}
		o := &payment.Order{ID: e.next, Key: r.Key, BizID: r.BizID, Form: r.Form, Ledger: r.Ledger, Amount: r.Amount,
			From: r.From, To: r.To, Channel: r.Channel, ChannelAccount: r.ChannelAccount, Original: r.Original,
			Instruments: slices.Clone(r.Instruments), State: payment.Accepted, Stage: payment.StageHold,
			Created: 1000 + e.next, Updated: 1000 + e.next, Version: 1}
		e.next++
		e.orders[o.ID], e.keys[o.Key] = o, o.ID
		out[i] = PaymentReply{Result: payment.ResultOK, Order: o}
	}
	if e.replies != nil {
		out = e.replies(out)
	}
	return out, nil
}

func (e *fakeEngine) Orders(ids []uint64) ([]*payment.Order, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return nil, err
	}
	out := make([]*payment.Order, len(ids))
	for i, id := range ids {
		out[i] = e.orders[id]
	}
	return out, nil
}

func (e *fakeEngine) sorted() []*payment.Order {
	var out []*payment.Order
	for _, o := range e.orders {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *payment.Order) int { return int(a.ID) - int(b.ID) })
	return out
}

func (e *fakeEngine) OrdersByBizID(bizID string, limit int) ([]*payment.Order, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return nil, err
	}
	var out []*payment.Order
	for _, o := range e.sorted() {
		if o.BizID == bizID && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (e *fakeEngine) TransfersByBizID(bizID string, limit int) ([]uint64, error) {
	os, err := e.OrdersByBizID(bizID, limit)
	var ids []uint64
	for _, o := range os {
		for step := range 64 {
			if o.Done&(1<<step) != 0 {
				ids = append(ids, payment.TransferID(o.ID, step))
			}
		}
	}
	slices.Sort(ids)
	return ids, err
}

func (e *fakeEngine) Reconcile(bizID string) (BizRecon, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return BizRecon{}, err
	}
	return e.recons[bizID], nil
}

func (e *fakeEngine) Exceptions(includeResolved bool, afterOrder uint64, limit int) ([]*payment.Order, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return nil, err
	}
	var out []*payment.Order
	for _, o := range e.sorted() {
		if o.ID <= afterOrder || len(out) == limit {
			continue
		}
		if slices.ContainsFunc(o.Exceptions, func(x payment.Exception) bool {
			return includeResolved || x.Step != payment.ExcResolved
		}) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (e *fakeEngine) Resolve(orderID uint64, index int, how payment.Resolution, note string) (payment.Result, *payment.Order, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return 0, nil, err
	}
	o := e.orders[orderID]
	if o == nil {
		return payment.ResultOrderNotFound, nil, nil
	}
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"bank"})
	if err != nil {
		return 0, nil, err
	}
	_, res := o.Resolve(setup, index, how, note, 5000)
	return res, o, nil
}

func (e *fakeEngine) SetDegraded(channel string, degraded bool) (ChannelStatus, error) {
	defer e.mu.Unlock()
	if err := e.enter(); err != nil {
		return ChannelStatus{}, err
	}
	c := e.channels[channel]
	if c == nil {
		return ChannelStatus{}, fmt.Errorf("gateway %q: %w", channel, ErrUnknownChannel)
	}
	c.Degraded = degraded
	return *c, nil
}

func (e *fakeEngine) Channels() []ChannelStatus {
	defer e.mu.Unlock()
	_ = e.enter()
	var out []ChannelStatus
	for _, c := range e.channels {
		out = append(out, *c)
	}
	return out
}

type paymentFixture struct {
	client  ledgerv1.PaymentServiceClient
	engine  *fakeEngine
	metrics *Metrics
	ctx     context.Context
}

// newPaymentFixture serves a fake engine the way the daemon does: NewServer, then
// RegisterPayments, over a real gRPC connection.
func newPaymentFixture(t *testing.T) *paymentFixture {
	t.Helper()
	m := NewMetrics()
	e := newFakeEngine()
	srv, _ := NewServer(NewService(nil, m))
	RegisterPayments(srv, e, m)
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
	})
	return &paymentFixture{client: ledgerv1.NewPaymentServiceClient(conn), engine: e, metrics: m, ctx: context.Background()}
}

func recharge(key string, amount uint64) *ledgerv1.PaymentRequest {
	return &ledgerv1.PaymentRequest{IdempotencyKey: key, BizId: "biz-" + key, Form: ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE,
		Ledger: 1, Amount: amount, ToAccountId: 7, Channel: "alipay", ChannelAccount: "card-1"}
}

func resultName(r ledgerv1.PaymentResult) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "PAYMENT_RESULT_"))
}

// TestPaymentEnumNumbers: every result (and form, instrument kind, state, exception kind and
// step, resolution) of the payment layer has a wire value of the same number and name, and the
// wire has no other value but UNSPECIFIED.
func TestPaymentEnumNumbers(t *testing.T) {
	check := func(what, prefix string, wire map[string]int32, names map[int32]string) {
		t.Helper()
		for n, name := range names {
			wireName := prefix + strings.ToUpper(name)
			if got, ok := wire[wireName]; !ok || got != n {
				t.Errorf("%s %q (%d): wire %s is %d (defined: %v), want %d", what, name, n, wireName, got, ok, n)
			}
		}
		if len(wire) != len(names)+1 || wire[prefix+"UNSPECIFIED"] != 0 {
			t.Errorf("%s: the wire has %d values, want %d and UNSPECIFIED = 0", what, len(wire), len(names)+1)
		}
	}
	results := map[int32]string{}
	for _, r := range payment.Results() {
		results[int32(r)] = r.String()
	}
	if results[int32(payment.ResultKeyReused)] != "key_reused" ||
		ledgerv1.PaymentResult_PAYMENT_RESULT_KEY_REUSED != ledgerv1.PaymentResult(payment.ResultKeyReused) {
		t.Fatalf("key_reused does not line up")
	}
	check("result", "PAYMENT_RESULT_", ledgerv1.PaymentResult_value, results)
	// The other enums have no list: walk their values until the name is the fallback.
	walk := func(name func(int) string) map[int32]string {
		out := map[int32]string{}
		for n := 1; n < 256 && !strings.Contains(name(n), "("); n++ {
			out[int32(n)] = name(n)
		}
		return out
	}
	check("form", "PAYMENT_FORM_", ledgerv1.PaymentForm_value, walk(func(n int) string { return payment.Form(n).String() }))
	check("instrument kind", "INSTRUMENT_KIND_", ledgerv1.InstrumentKind_value,
		walk(func(n int) string { return payment.Kind(n).String() }))
	check("state", "PAYMENT_STATE_", ledgerv1.PaymentState_value, walk(func(n int) string { return payment.State(n).String() }))
	check("exception kind", "EXCEPTION_KIND_", ledgerv1.ExceptionKind_value,
		walk(func(n int) string { return payment.ExceptionKind(n).String() }))
	check("exception step", "EXCEPTION_STATE_", ledgerv1.ExceptionState_value,
		walk(func(n int) string { return payment.ExceptionStep(n).String() }))
	check("resolution", "RESOLUTION_", ledgerv1.Resolution_value,
		map[int32]string{int32(payment.ResolveRefund): "refund", int32(payment.ResolveClose): "close",
			int32(payment.ResolveReverse): "reverse"})
	check("statement class", "STATEMENT_CLASS_", ledgerv1.StatementClass_value,
		walk(func(n int) string { return payment.LineClass(n).String() }))
}

// fullOrder has every field the wire carries set to something other than its zero value.
func fullOrder() *payment.Order {
	o := &payment.Order{ID: 42, Key: "k-42", BizID: "biz-42", Form: payment.Pay, Ledger: 3, Amount: 900, From: 11, To: 12,
		Channel: "alipay", ChannelAccount: "card-9", Original: 0,
		Instruments: []payment.Instrument{{Kind: payment.Coupon, Amount: 100, Account: 13, Refunded: 50},
			{Kind: payment.Balance, Amount: 300, Account: 11}, {Kind: payment.Card, Amount: 500, Refunded: 500}},
		State: payment.Failed, Result: payment.ResultLedgerRefused, Ledgered: ledger.ResultDebitAccountClosed,
		Done: 1<<1 | 1<<5 | 1<<13 | 1<<16, Refunded: 550, Txn: "T-1", Paid: 500, Flagged: true, Created: 10, Updated: 20,
		Exceptions: []payment.Exception{
			{Kind: payment.DuplicatePayment, Step: payment.ExcRefunding, Txn: "T-2", Amount: 500, Note: "dup", Created: 11, Updated: 12},
			{Kind: payment.StatusConflict, Step: payment.ExcResolved, Txn: "T-3", Note: "closed", Created: 13, Updated: 14}}}
	return o
}

// TestPaymentConvertRoundTrip: an order and a request survive the wire (through bytes) with
// every field the wire carries.
func TestPaymentConvertRoundTrip(t *testing.T) {
	o := fullOrder()
	p := OrderToProto(o)
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back ledgerv1.PaymentOrder
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := OrderFromProto(&back); !reflect.DeepEqual(got, o) {
		t.Errorf("order round trip:\n got %+v\nwant %+v", got, o)
	}
	if back.GetChannelOrderNo() != "P42" || back.GetChannelAmount() != 500 || back.GetChannelTxn() != "T-1" ||
		back.GetLedgerResult() != ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_DEBIT_ACCOUNT_CLOSED {
		t.Errorf("wire order: %v", &back)
	}
	want := []uint64{payment.TransferID(42, 1), payment.TransferID(42, 5), payment.TransferID(42, 13), payment.TransferID(42, 16)}
	if !slices.Equal(back.GetTransferIds(), want) {
		t.Errorf("transfer ids %v, want %v", back.GetTransferIds(), want)
	}
	if x := back.GetExceptions()[1]; x.GetOrderId() != 42 || x.GetIndex() != 1 || x.GetBizId() != "biz-42" ||
		x.GetState() != ledgerv1.ExceptionState_EXCEPTION_STATE_RESOLVED {
		t.Errorf("wire exception: %v", x)
	}

	r := payment.Request{Key: "k", BizID: "b", Form: payment.Pay, Ledger: 2, Amount: 30, From: 4, To: 5, Channel: "bank",
		ChannelAccount: "acct", Original: 9, Instruments: []payment.Instrument{{Kind: payment.Balance, Amount: 10, Account: 4},
			{Kind: payment.Card, Amount: 20}}}
	b, err = proto.Marshal(PaymentRequestToProto(&r))
	if err != nil {
		t.Fatal(err)
	}
	var req ledgerv1.PaymentRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if got := PaymentRequestFromProto(&req); !reflect.DeepEqual(got, r) {
		t.Errorf("request round trip:\n got %+v\nwant %+v", got, r)
	}
	// An enum value past the domain's byte is never truncated into a valid one.
	if got := PaymentRequestFromProto(&ledgerv1.PaymentRequest{Form: 257}).Form; got != 0xff {
		t.Errorf("form 257 became %v", got)
	}
}

func TestCreatePayments(t *testing.T) {
	f := newPaymentFixture(t)
	resp, err := f.client.CreatePayments(f.ctx, &ledgerv1.CreatePaymentsRequest{Requests: []*ledgerv1.PaymentRequest{
		recharge("a", 100), recharge("", 100), recharge("b", 0), recharge("a", 100), recharge("a", 200),
		{IdempotencyKey: "c", Form: ledgerv1.PaymentForm_PAYMENT_FORM_UNSPECIFIED, Amount: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ok", "key_required", "amount_must_not_be_zero", "exists", "key_reused", "form_unknown"}
	if len(resp.GetResults()) != len(want) {
		t.Fatalf("%d results, want %d", len(resp.GetResults()), len(want))
	}
	for i, r := range resp.GetResults() {
		if r.GetIndex() != uint32(i) || resultName(r.GetResult()) != want[i] {
			t.Errorf("result %d: index %d %s, want %s", i, r.GetIndex(), resultName(r.GetResult()), want[i])
		}
		if hasOrder := r.GetOrder() != nil; hasOrder != (want[i] == "ok" || want[i] == "exists") {
			t.Errorf("result %d (%s): order %v", i, want[i], r.GetOrder())
		}
	}
	o := resp.GetResults()[0].GetOrder()
	if o.GetId() != 1 || o.GetIdempotencyKey() != "a" || o.GetState() != ledgerv1.PaymentState_PAYMENT_STATE_ACCEPTED ||
		o.GetChannelOrderNo() != "P1" || o.GetAmount() != 100 || o.GetToAccountId() != 7 {
		t.Errorf("voucher: %v", o)
	}
	if resp.GetResults()[3].GetOrder().GetId() != 1 {
		t.Errorf("the repeated request answered order %d, want 1", resp.GetResults()[3].GetOrder().GetId())
	}
	for _, c := range []struct {
		form, result string
		want         float64
	}{{"recharge", "ok", 1}, {"recharge", "exists", 1}, {"recharge", "key_reused", 1}, {"recharge", "key_required", 1},
		{"unspecified", "form_unknown", 1}, {"pay", "ok", 0}} {
		if got := counterValue(t, f.metrics, "ledger_payment_requests_total", "form", c.form, "result", c.result); got != c.want {
			t.Errorf("ledger_payment_requests_total{form=%q,result=%q} = %v, want %v", c.form, c.result, got, c.want)
		}
	}
}

// counterValue is the value of the counter with the labels (name, value pairs), or -1 if the
// registry has no such series.
func counterValue(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			matched := 0
			for _, l := range s.GetLabel() {
				for i := 0; i+1 < len(labels); i += 2 {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						matched++
					}
				}
			}
			if matched != len(labels)/2 {
				continue
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

func TestGetOrders(t *testing.T) {
	f := newPaymentFixture(t)
	if _, err := f.client.CreatePayments(f.ctx, &ledgerv1.CreatePaymentsRequest{Requests: []*ledgerv1.PaymentRequest{
		recharge("a", 1), recharge("b", 2), recharge("c", 3)}}); err != nil {
		t.Fatal(err)
	}
	f.engine.orders[2].Done = 1<<1 | 1<<13
	f.engine.orders[3].BizID = "biz-b"
	f.engine.orders[3].Done = 1 << 1
	resp, err := f.client.GetOrders(f.ctx, &ledgerv1.GetOrdersRequest{Ids: []uint64{3, 99, 1}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, o := range resp.GetOrders() {
		ids = append(ids, o.GetId())
	}
	if !slices.Equal(ids, []uint64{3, 1}) {
		t.Errorf("orders %v, want 3 and 1 (99 omitted)", ids)
	}
	byBiz, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: "biz-b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{payment.TransferID(2, 1), payment.TransferID(2, 13), payment.TransferID(3, 1)}
	if len(byBiz.GetOrders()) != 2 || !slices.Equal(byBiz.GetTransferIds(), want) {
		t.Errorf("by biz id: %d orders, transfers %v; want 2 and %v", len(byBiz.GetOrders()), byBiz.GetTransferIds(), want)
	}
	if !slices.Equal(byBiz.GetOrders()[0].GetTransferIds(), want[:2]) {
		t.Errorf("order 2 transfers %v, want %v", byBiz.GetOrders()[0].GetTransferIds(), want[:2])
	}
	one, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: "biz-b", Limit: 1})
	if err != nil || len(one.GetOrders()) != 1 {
		t.Errorf("limit 1: %v %v", one, err)
	}
}

func TestExceptions(t *testing.T) {
	f := newPaymentFixture(t)
	var reqs []*ledgerv1.PaymentRequest
	for i := range 4 {
		reqs = append(reqs, recharge(fmt.Sprint("k", i), 10))
	}
	if _, err := f.client.CreatePayments(f.ctx, &ledgerv1.CreatePaymentsRequest{Requests: reqs}); err != nil {
		t.Fatal(err)
	}
	open := payment.Exception{Kind: payment.AmountMismatch, Step: payment.ExcOpen, Txn: "T", Amount: 7, Created: 1, Updated: 2}
	resolved := payment.Exception{Kind: payment.StatusConflict, Step: payment.ExcResolved, Note: "done"}
	f.engine.orders[1].Exceptions = []payment.Exception{resolved, open}
	f.engine.orders[2].Exceptions = []payment.Exception{resolved}
	f.engine.orders[4].Exceptions = []payment.Exception{open}

	list := func(include bool, after uint64, limit uint32) ([]string, uint64) {
		t.Helper()
		resp, err := f.client.ListExceptions(f.ctx, &ledgerv1.ListExceptionsRequest{IncludeResolved: include,
			AfterOrderId: after, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range resp.GetExceptions() {
			out = append(out, fmt.Sprintf("%d/%d", x.GetOrderId(), x.GetIndex()))
		}
		return out, resp.GetNextAfterOrderId()
	}
	if got, next := list(false, 0, 0); !slices.Equal(got, []string{"1/1", "4/0"}) || next != 0 {
		t.Errorf("open: %v next %d; want [1/1 4/0] and 0", got, next)
	}
	if got, next := list(true, 0, 2); !slices.Equal(got, []string{"1/0", "1/1", "2/0"}) || next != 2 {
		t.Errorf("all, first page: %v next %d; want [1/0 1/1 2/0] and 2", got, next)
	}
	if got, next := list(true, 2, 2); !slices.Equal(got, []string{"4/0"}) || next != 0 {
		t.Errorf("all, second page: %v next %d; want [4/0] and 0", got, next)
	}

	resp, err := f.client.ResolveException(f.ctx, &ledgerv1.ResolveExceptionRequest{OrderId: 4, Index: 0,
		Resolution: ledgerv1.Resolution_RESOLUTION_CLOSE, Note: "written off"})
	if err != nil {
		t.Fatal(err)
	}
	x := resp.GetOrder().GetExceptions()[0]
	if resp.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_OK || x.GetState() != ledgerv1.ExceptionState_EXCEPTION_STATE_RESOLVED ||
		x.GetNote() != "written off" {
		t.Errorf("resolve: %s, exception %v", resp.GetResult(), x)
	}
	for _, c := range []struct {
		req  *ledgerv1.ResolveExceptionRequest
		want string
	}{
		{&ledgerv1.ResolveExceptionRequest{OrderId: 4, Resolution: ledgerv1.Resolution_RESOLUTION_CLOSE}, "exception_not_open"},
		{&ledgerv1.ResolveExceptionRequest{OrderId: 4, Index: 1, Resolution: ledgerv1.Resolution_RESOLUTION_CLOSE}, "exception_not_found"},
		{&ledgerv1.ResolveExceptionRequest{OrderId: 1, Index: 0, Resolution: ledgerv1.Resolution_RESOLUTION_REFUND}, "exception_not_open"},
		{&ledgerv1.ResolveExceptionRequest{OrderId: 99, Resolution: ledgerv1.Resolution_RESOLUTION_REFUND}, "order_not_found"},
	} {
		resp, err := f.client.ResolveException(f.ctx, c.req)
		if err != nil || resultName(resp.GetResult()) != c.want {
			t.Errorf("%v: %s %v, want %s", c.req, resp.GetResult(), err, c.want)
		}
		if (resp.GetOrder() != nil) != (c.req.GetOrderId() != 99) {
			t.Errorf("%v: order %v", c.req, resp.GetOrder())
		}
	}
}

func TestChannels(t *testing.T) {
	f := newPaymentFixture(t)
	resp, err := f.client.SetChannelDegraded(f.ctx, &ledgerv1.SetChannelDegradedRequest{Channel: "bank", Degraded: true})
	if err != nil || !resp.GetStatus().GetDegraded() || resp.GetStatus().GetName() != "bank" ||
		resp.GetStatus().GetCircuit() != ledgerv1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Fatalf("degrade bank: %v %v", resp, err)
	}
	_, err = f.client.SetChannelDegraded(f.ctx, &ledgerv1.SetChannelDegradedRequest{Channel: "nope", Degraded: true})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `gateway "nope"`) {
		t.Errorf("unknown channel: %v, want NOT_FOUND", err)
	}
	list, err := f.client.ListChannels(f.ctx, &ledgerv1.ListChannelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list.GetChannels() {
		got = append(got, fmt.Sprintf("%s %v %s %d %d", c.GetName(), c.GetDegraded(), c.GetCircuit(), c.GetInFlight(), c.GetQueued()))
	}
	want := []string{"alipay false CIRCUIT_STATE_HALF_OPEN 3 1", "bank true CIRCUIT_STATE_CLOSED 0 0"}
	if !slices.Equal(got, want) {
		t.Errorf("channels %q, want %q", got, want)
	}
}

// TestPaymentValidation: malformed requests are INVALID_ARGUMENT with a message that names the
// field, and never reach the engine.
func TestPaymentValidation(t *testing.T) {
	f := newPaymentFixture(t)
	many := make([]*ledgerv1.PaymentRequest, PaymentRequestsMax+1)
	for i := range many {
		many[i] = recharge(fmt.Sprint(i), 1)
	}
	pay := func(ins ...*ledgerv1.Instrument) *ledgerv1.PaymentRequest {
		r := recharge("p", 10)
		r.Form, r.Instruments = ledgerv1.PaymentForm_PAYMENT_FORM_PAY, ins
		return r
	}
	create := func(rs ...*ledgerv1.PaymentRequest) func() error {
		return func() error {
			_, err := f.client.CreatePayments(f.ctx, &ledgerv1.CreatePaymentsRequest{Requests: rs})
			return err
		}
	}
	for _, c := range []struct {
		name string
		call func() error
		want string
	}{
		{"no requests", create(), "no requests"},
		{"too many requests", create(many...), "1025 requests; at most 1024 per call"},
		{"form", create(recharge("a", 1), recharge("b", 1), recharge("c", 1), &ledgerv1.PaymentRequest{Form: 9}),
			"requests[3].form: unknown form 9"},
		{"negative form", create(&ledgerv1.PaymentRequest{Form: -1}), "requests[0].form: unknown form -1"},
		{"instrument kind", create(pay(&ledgerv1.Instrument{Kind: 1, Amount: 5}, &ledgerv1.Instrument{Kind: 4, Amount: 5})),
			"requests[0].instruments[1].kind: unknown instrument kind 4"},
		{"refunded", create(pay(&ledgerv1.Instrument{Kind: 1, Amount: 10, Refunded: 1})),
			"requests[0].instruments[0].refunded: output only, must be 0"},
		{"no ids", func() error { _, err := f.client.GetOrders(f.ctx, &ledgerv1.GetOrdersRequest{}); return err }, "no ids"},
		{"too many ids", func() error {
			_, err := f.client.GetOrders(f.ctx, &ledgerv1.GetOrdersRequest{Ids: make([]uint64, OrderIDsMax+1)})
			return err
		}, "8191 ids; at most 8190 per lookup"},
		{"no biz id", func() error {
			_, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{})
			return err
		}, "biz_id is required"},
		{"long biz id", func() error {
			_, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: strings.Repeat("x", 65)})
			return err
		}, "biz_id: 65 bytes; at most 64"},
		{"biz id limit", func() error {
			_, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: "b", Limit: 1001})
			return err
		}, "limit 1001; at most 1000"},
		{"exceptions limit", func() error {
			_, err := f.client.ListExceptions(f.ctx, &ledgerv1.ListExceptionsRequest{Limit: 5000})
			return err
		}, "limit 5000; at most 1000"},
		{"order id", func() error {
			_, err := f.client.ResolveException(f.ctx, &ledgerv1.ResolveExceptionRequest{Resolution: 1})
			return err
		}, "order_id must not be zero"},
		{"no resolution", func() error {
			_, err := f.client.ResolveException(f.ctx, &ledgerv1.ResolveExceptionRequest{OrderId: 1})
			return err
		}, "resolution is required"},
		{"resolution", func() error {
			_, err := f.client.ResolveException(f.ctx, &ledgerv1.ResolveExceptionRequest{OrderId: 1, Resolution: 4})
			return err
		}, "resolution: unknown resolution 4"},
		{"channel", func() error {
			_, err := f.client.SetChannelDegraded(f.ctx, &ledgerv1.SetChannelDegradedRequest{Degraded: true})
			return err
		}, "channel is required"},
		{"recon biz id", func() error {
			_, err := f.client.ReconcileBizId(f.ctx, &ledgerv1.ReconcileBizIdRequest{})
			return err
		}, "biz_id is required"},
		{"recon long biz id", func() error {
			_, err := f.client.ReconcileBizId(f.ctx, &ledgerv1.ReconcileBizIdRequest{BizId: strings.Repeat("x", 65)})
			return err
		}, "biz_id: 65 bytes; at most 64"},
	} {
		err := c.call()
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "invalid request: "+c.want {
			t.Errorf("%s: %v; want INVALID_ARGUMENT %q", c.name, err, c.want)
		}
	}
	if f.engine.calls != 0 {
		t.Errorf("the engine was called %d times for invalid requests", f.engine.calls)
	}
}

// TestPaymentEngineErrors: the engine's errors go through the one error table.
func TestPaymentEngineErrors(t *testing.T) {
	f := newPaymentFixture(t)
	calls := map[string]func() error{
		"create": func() error {
			_, err := f.client.CreatePayments(f.ctx, &ledgerv1.CreatePaymentsRequest{Requests: []*ledgerv1.PaymentRequest{recharge("a", 1)}})
			return err
		},
		"orders": func() error {
			_, err := f.client.GetOrders(f.ctx, &ledgerv1.GetOrdersRequest{Ids: []uint64{1}})
			return err
		},
		"by biz id": func() error {
			_, err := f.client.GetOrdersByBizId(f.ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: "b"})
			return err
		},
		"exceptions": func() error {
			_, err := f.client.ListExceptions(f.ctx, &ledgerv1.ListExceptionsRequest{})
			return err
		},
		"resolve": func() error {
			_, err := f.client.ResolveException(f.ctx, &ledgerv1.ResolveExceptionRequest{OrderId: 1, Resolution: 2})
			return err
		},
		"degrade": func() error {
			_, err := f.client.SetChannelDegraded(f.ctx, &ledgerv1.SetChannelDegradedRequest{Channel: "bank"})
			return err
		},
		"reconcile": func() error {
			_, err := f.client.ReconcileBizId(f.ctx, &ledgerv1.ReconcileBizIdRequest{BizId: "b"})
			return err
		},
	}
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("payment shard 3: %w", actors.ErrOverloaded), codes.ResourceExhausted},
		{actors.ErrStopped, codes.Unavailable},
		{errors.New("pebble: disk on fire"), codes.Internal},
		{fmt.Errorf("gateway x: %w", ErrUnknownChannel), codes.NotFound},
		{fmt.Errorf("payments: %w", ErrReconcileTooLarge), codes.FailedPrecondition},
	} {
		f.engine.err = c.err
		for name, call := range calls {
			err := call()
			if status.Code(err) != c.want {
				t.Errorf("%s with %v: %v, want %v", name, c.err, err, c.want)
			}
			if c.want == codes.ResourceExhausted && retryInfoOf(err) == nil {
				t.Errorf("%s with %v: no RetryInfo", name, c.err)
			}
		}
	}
	f.engine.err = nil

	// An engine that breaks its promises is an internal error, not a wrong answer.
	for name, tamper := range map[string]func([]PaymentReply) []PaymentReply{
		"too few replies":     func(r []PaymentReply) []PaymentReply { return r[:0] },
		"ok without an order": func(r []PaymentReply) []PaymentReply { r[0].Order = nil; return r },
	} {
		f.engine.replies = tamper
		if err := calls["create"](); status.Code(err) != codes.Internal {
			t.Errorf("%s: %v, want INTERNAL", name, err)
		}
	}
}

// TestReconcileBizId: the engine's reconciliation as the API answers it: counts, differences as
// lines in order, at most ReconDifferencesMax of them with the total.
func TestReconcileBizId(t *testing.T) {
	f := newPaymentFixture(t)
	miss := payment.Difference{Kind: payment.DiffMissing, Order: 2, Step: 13, Transfer: payment.TransferID(2, 13),
		Expected: "debit=1 credit=2 amount=5 ledger=1 code=3 flags=none", Found: "no transfer in the ledger"}
	many := make([]payment.Difference, ReconDifferencesMax+5)
	for i := range many {
		many[i] = payment.Difference{Kind: payment.DiffUnmatched, Transfer: uint64(i + 1), Expected: "e", Found: "f"}
	}
	f.engine.recons = map[string]BizRecon{"clean": {Orders: 2, Transfers: 9},
		"off":  {Orders: 1, Transfers: 3, Differences: []payment.Difference{miss}},
		"many": {Orders: 0, Transfers: len(many), Differences: many}}
	for biz, want := range map[string]*ledgerv1.ReconcileBizIdResponse{
		"clean": {Orders: 2, Transfers: 9},
		"off": {Orders: 1, Transfers: 3, DifferencesTotal: 1, Differences: []string{miss.String()},
			DifferenceDetails: []*ledgerv1.ReconDifference{{Kind: "missing", OrderId: 2, Step: 13,
				TransferId: payment.TransferID(2, 13), Expected: miss.Expected, Found: miss.Found}}},
		"none": {},
	} {
		got, err := f.client.ReconcileBizId(f.ctx, &ledgerv1.ReconcileBizIdRequest{BizId: biz})
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("%s: %v %v, want %v", biz, got, err, want)
		}
	}
	got, err := f.client.ReconcileBizId(f.ctx, &ledgerv1.ReconcileBizIdRequest{BizId: "many"})
	if err != nil || len(got.GetDifferences()) != ReconDifferencesMax || got.GetDifferencesTotal() != uint32(len(many)) ||
		got.GetDifferences()[0] != "unmatched transfer 1: expected e, found f" {
		t.Fatalf("many: %d differences of %d, first %q, %v", len(got.GetDifferences()), got.GetDifferencesTotal(),
			got.GetDifferences()[0], err)
	}
	if want := "missing order 2 step 13 transfer " + fmt.Sprint(payment.TransferID(2, 13)) +
		": expected debit=1 credit=2 amount=5 ledger=1 code=3 flags=none, found no transfer in the ledger"; miss.String() != want {
		t.Errorf("difference %q, want %q", miss.String(), want)
	}
}

// TestOrderCurrency: with the currency of each ledger named, the orders and exception records
// the service answers carry their ledger's (none where it names none); without, none at all.
func TestOrderCurrency(t *testing.T) {
	e := newFakeEngine()
	named := NewPaymentService(e, nil, WithOrderCurrency(func(l uint32) string {
		return map[uint32]string{1: "CNY"}[l]
	}))
	ctx := context.Background()
	if _, err := named.CreatePayments(ctx, &ledgerv1.CreatePaymentsRequest{Requests: []*ledgerv1.PaymentRequest{
		recharge("a", 6898101), recharge("b", 5)}}); err != nil {
		t.Fatal(err)
	}
	e.orders[2].Ledger = 2
	for _, o := range e.orders {
		o.Exceptions = []payment.Exception{{Kind: payment.AmountMismatch, Step: payment.ExcOpen, Txn: "T", Amount: 7}}
	}
	check := func(s *PaymentService, want map[uint64]string) {
		t.Helper()
		orders, err := s.GetOrders(ctx, &ledgerv1.GetOrdersRequest{Ids: []uint64{1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orders.GetOrders() {
			if o.GetCurrency() != want[o.GetId()] || o.GetExceptions()[0].GetCurrency() != want[o.GetId()] {
				t.Errorf("order %d: currency %q, its exception's %q; want %q", o.GetId(), o.GetCurrency(),
					o.GetExceptions()[0].GetCurrency(), want[o.GetId()])
			}
		}
		excs, err := s.ListExceptions(ctx, &ledgerv1.ListExceptionsRequest{})
		if err != nil || len(excs.GetExceptions()) != 2 {
			t.Fatalf("exceptions: %v %v", excs, err)
		}
		for _, x := range excs.GetExceptions() {
			if x.GetCurrency() != want[x.GetOrderId()] {
				t.Errorf("exception of order %d: currency %q, want %q", x.GetOrderId(), x.GetCurrency(), want[x.GetOrderId()])
			}
		}
	}
	check(named, map[uint64]string{1: "CNY"})
	check(NewPaymentService(e, nil), nil)
}
