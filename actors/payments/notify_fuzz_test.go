package payments

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

// stubClient is a channel that decides every request at once: succeeded, the amount asked,
// txn "T-" and the order number.
type stubClient struct{}

func (stubClient) Do(_ context.Context, r channel.Request) (channel.Result, error) {
	return channel.Result{Status: channel.Succeeded, Txn: "T-" + r.OrderNo, Amount: r.Amount}, nil
}

func (c stubClient) Query(ctx context.Context, op channel.Op, orderNo string) (channel.Result, error) {
	return channel.Result{Status: channel.NotFound}, nil
}

var ghostSecret = []byte("ghost secret")

// notifyRig is an engine with a few final orders and its notify handler (channel "bank";
// "ghost" has a secret but no channel).
type notifyRig struct {
	engine  *Engine
	handler http.Handler
	ids     []uint64 // the orders that exist
}

func newNotifyRig(tb testing.TB, opts ...func(*Config)) *notifyRig {
	store, err := storage.Open(tb.TempDir(), storage.Options{Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2})
	if err != nil {
		tb.Fatal(err)
	}
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"bank"})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{Setup: setup, Clients: map[string]channel.Client{"bank": stubClient{}},
		Gateway: gateway.Config{Timeout: time.Second, RateLimit: 1e6, Burst: 1000, MaxInFlight: 32},
		Tick:    20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := Start(store, l, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(context.Background()); err != nil {
			tb.Error(err)
		}
		l.Stop()
		if err := store.Close(); err != nil {
			tb.Error(err)
		}
	})
	rs, err := l.CreateAccounts([]ledger.Account{
		{ID: alice, Ledger: 1, Code: 2001, Flags: ledger.AccountDebitsMustNotExceedCredits},
		{ID: bob, Ledger: 1, Code: 2001, Flags: ledger.AccountDebitsMustNotExceedCredits},
		{ID: shop, Ledger: 1, Code: 2002, Flags: ledger.AccountDebitsMustNotExceedCredits},
		{ID: coupons, Ledger: 1, Code: 2004}})
	if err != nil {
		tb.Fatal(err)
	}
	for i, r := range rs {
		if r != ledger.AccountResultOK {
			tb.Fatalf("account %d: %v", i, r)
		}
	}
	r := &notifyRig{engine: e, handler: e.NotifyHandler(map[string][]byte{"bank": secret, "ghost": ghostSecret})}
	create := func(req payment.Request) {
		reps, err := e.Create([]payment.Request{req})
		if err != nil || reps[0].Result != payment.ResultOK {
			tb.Fatalf("create %s: %v %v", req.Key, reps, err)
		}
		r.ids = append(r.ids, reps[0].Order.ID)
		r.quiet(tb)
	}
	create(payment.Request{Key: "r1", BizID: "biz-r1", Form: payment.Recharge, Ledger: 1, Amount: 1000, To: alice,
		Channel: "bank", ChannelAccount: "card-1"})
	create(payment.Request{Key: "w1", BizID: "biz-w1", Form: payment.Withdraw, Ledger: 1, Amount: 100, From: alice,
		Channel: "bank", ChannelAccount: "card-1"})
	create(payment.Request{Key: "p1", BizID: "biz-p1", Form: payment.Pay, Ledger: 1, Amount: 300, From: alice, To: shop,
		Channel: "bank", Instruments: []payment.Instrument{{Kind: payment.Coupon, Amount: 50, Account: coupons},
			{Kind: payment.Balance, Amount: 100}, {Kind: payment.Card, Amount: 150}}})
	create(payment.Request{Key: "t1", Form: payment.Transfer, Ledger: 1, Amount: 10, From: alice, To: bob})
	return r
}

// quiet waits until every order is final and waits for nothing (no posting, no refund).
func (r *notifyRig) quiet(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		os, err := r.engine.Orders(r.ids)
		if err != nil {
			tb.Fatal(err)
		}
		done := true
		for _, o := range os {
			done = done && o != nil && o.State.Final() && !o.Active()
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(os)
			tb.Fatalf("orders did not settle: %s", b)
		}
		time.Sleep(time.Millisecond)
	}
}

// snapshot is the durable state a callback could change: the orders (and the ids just past
// them, where a new order would appear) and every exception record.
func (r *notifyRig) snapshot(tb testing.TB) string {
	tb.Helper()
	ids := append([]uint64(nil), r.ids...)
	for id := uint64(1); id <= uint64(len(r.ids))+8; id++ {
		ids = append(ids, id)
	}
	os, err := r.engine.Orders(ids)
	if err != nil {
		tb.Fatal(err)
	}
	xs, err := r.engine.Exceptions(true, 0, 1000)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(struct {
		Orders     []*payment.Order
		Exceptions []*payment.Order
	}{os, xs})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// Ways a fuzz input makes its request.
const (
	rawBody     = iota // body and signature as given
	signedBody         // the body as given, signed with the channel's secret
	fieldNotice        // a notice of the fields, signed
	orderNotice        // a notice of the fields about an existing order (picked by amount), signed
	pairNotice         // two notices of the fields (the second with another txn) in one signed body
	noticeModes
)

// FuzzNotify posts callbacks to the notify endpoint: it never panics; a request that is not
// correctly signed for a configured channel is answered 4xx and changes nothing; a correctly
// signed notice that names no existing order is answered 4xx and changes nothing, and so is
// a body of many such notices, answered 200 with each one's refusal.
func FuzzNotify(f *testing.F) {
	r := newNotifyRig(f)
	valid, validSig := channel.SignNotice(secret, channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(r.ids[0]),
		Txn: "T-" + payment.OrderNo(r.ids[0]), Status: channel.Succeeded, Amount: 1000, BizID: "biz-r1"})
	_, wrongSig := channel.SignNotice([]byte("not the secret"), channel.Notice{Op: channel.Pay,
		OrderNo: payment.OrderNo(r.ids[0]), Txn: "T-" + payment.OrderNo(r.ids[0]), Status: channel.Succeeded,
		Amount: 1000, BizID: "biz-r1"})
	big := append(append([]byte(`{"op":"pay","order_no":"P1","txn":"t","status":"succeeded","amount":1,"biz_id":"`),
		bytes.Repeat([]byte("x"), channel.MaxNoticeBytes)...), `"}`...)
	type seed struct {
		name    string
		body    []byte
		sig     string
		mode    uint8
		op      uint8
		orderNo string
		txn     string
		status  uint8
		amount  uint64
		biz     string
	}
	for _, s := range []seed{
		{name: "bank", body: valid, sig: validSig, mode: rawBody},                                // a valid notice, again
		{name: "bank", body: valid, sig: wrongSig, mode: rawBody},                                // a bad signature
		{name: "bank", body: valid, sig: "zz" + validSig[2:], mode: rawBody},                     // not hex
		{name: "bank", body: valid, sig: validSig[:10], mode: rawBody},                           // short
		{name: "bank", body: valid[:len(valid)/2], sig: validSig, mode: rawBody},                 // truncated, unsigned
		{name: "bank", body: valid[:len(valid)/2], mode: signedBody},                             // truncated, signed
		{name: "bank", body: big, mode: signedBody},                                              // oversized, signed
		{name: "bank", body: big, sig: validSig, mode: rawBody},                                  // oversized
		{name: "nope", body: valid, sig: validSig, mode: rawBody},                                // an unknown channel
		{name: "ghost", op: 1, orderNo: "P1", txn: "t", status: 2, amount: 1, mode: fieldNotice}, // a secret, no channel
		{name: "", body: valid, sig: validSig, mode: rawBody},                                    // no channel
		{name: "bank", op: 1, orderNo: "P999999", txn: "t", status: 2, amount: 1000, mode: fieldNotice},
		{name: "bank", op: 1, orderNo: "P0", txn: "t", status: 2, amount: 1000, mode: fieldNotice},
		{name: "bank", op: 1, orderNo: "x1", txn: "t", status: 2, amount: 1000, mode: fieldNotice},
		{name: "bank", op: 3, orderNo: "P1-x0", txn: "t", status: 2, amount: 1000, mode: fieldNotice},
		{name: "bank", op: 1, txn: "T-dup", status: 2, amount: 0, biz: "biz-r1", mode: orderNotice},  // a duplicate payment
		{name: "bank", op: 1, txn: "T-fail", status: 3, amount: 0, biz: "biz-r1", mode: orderNotice}, // a status conflict
		{name: "bank", op: 2, txn: "T-w", status: 2, amount: 1, biz: "other", mode: orderNotice},     // another biz id
		{name: "bank", op: 1, orderNo: "P999999", txn: "t", status: 2, amount: 1000, mode: pairNotice},
		{name: "bank", op: 1, orderNo: "P1", txn: "t", status: 2, amount: 1000, mode: pairNotice},
	} {
		f.Add(s.name, s.body, s.sig, s.mode, s.op, s.orderNo, s.txn, s.status, s.amount, s.biz)
	}
	secrets := map[string][]byte{"bank": secret}
	f.Fuzz(func(t *testing.T, name string, body []byte, sig string, mode, op uint8, orderNo, txn string, status uint8,
		amount uint64, biz string) {
		key := secret
		if name == "ghost" {
			key = ghostSecret
		}
		switch mode % noticeModes {
		case signedBody:
			sig = hex.EncodeToString(mac(key, body))
		case orderNotice:
			orderNo = payment.OrderNo(r.ids[amount%uint64(len(r.ids))])
			fallthrough
		case fieldNotice:
			body, sig = channel.SignNotice(key, channel.Notice{Op: channel.Op(op % 4), OrderNo: orderNo, Txn: txn,
				Status: channel.Status(status % 5), Amount: amount, BizID: biz})
		case pairNotice:
			n := channel.Notice{Op: channel.Op(op % 4), OrderNo: orderNo, Txn: txn, Status: channel.Status(status % 5),
				Amount: amount, BizID: biz}
			m := n
			m.Txn += "2"
			body, sig = channel.SignNotices(key, []channel.Notice{n, m})
		}
		// Correctly signed: a configured channel's secret, a body it reads, the HMAC in hex.
		got, err := hex.DecodeString(sig)
		_, configured := secrets[name]
		signed := configured && err == nil && len(body) <= channel.MaxNoticesBytes && hmac.Equal(got, mac(secrets[name], body))
		var notices []channel.Notice
		var exists bool
		if signed {
			if notices, err = channel.ParseNotices(secrets[name], body, sig); err == nil {
				for _, n := range notices {
					if id, _, err := payment.ParseOrderNo(n.OrderNo); err == nil {
						for _, known := range r.ids {
							exists = exists || id == known
						}
					}
				}
			}
		}

		before := r.snapshot(t)
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.URL.Path = NotifyPath + name
		req.URL.RawPath = NotifyPath + url.PathEscape(name)
		req.Header.Set(channel.SignatureHeader, sig)
		rec := httptest.NewRecorder()
		r.handler.ServeHTTP(rec, req)
		code := rec.Code
		if exists {
			// A notice about an existing order may change it: let it settle, then go on.
			if code != http.StatusOK && code != http.StatusBadRequest {
				t.Fatalf("signed notices %+v for an existing order: %d %s", notices, code, rec.Body)
			}
			r.quiet(t)
			return
		}
		if notices != nil && channel.IsNoticeArray(body) {
			if code != http.StatusOK || strings.Contains(rec.Body.String(), `"ok"`) {
				t.Fatalf("channel %q, notices %+v naming no order: answered %d %s, want 200 refusing each",
					name, notices, code, strings.TrimSpace(rec.Body.String()))
			}
		} else if code < 400 || code > 499 {
			t.Fatalf("channel %q, body %q, signature %q (signed %v, notices %+v): answered %d %s, want 4xx",
				name, body, sig, signed, notices, code, strings.TrimSpace(rec.Body.String()))
		}
		if after := r.snapshot(t); after != before {
			t.Fatalf("channel %q, body %q (signed %v): answered %d and changed the orders:\n%s\nthen\n%s",
				name, body, signed, code, before, after)
		}
	})
}

func mac(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}
