package nrtrecon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

var secret = []byte("recon test secret")

// world is a store, its event stream, the ledger, the payment engine and a simulated channel
// whose notices the test reads on their way (the oracle of what the channel did).
type world struct {
	t       *testing.T
	store   *storage.Store
	seq     *events.Sequencer
	ledger  *actors.Ledger
	engine  *payments.Engine
	setup   *payment.Setup
	fake    *fake.Server
	notify  *httptest.Server
	handler atomic.Pointer[http.Handler]

	mu      sync.Mutex
	notices map[string][]channel.Notice // pay notices by order number, as the channel sent them
}

func newWorld(t *testing.T, cfg fake.Config) *world { return newWorldRetain(t, cfg, 0) }

// newWorldRetain is newWorld with retention keeping the newest retain events (0: all).
func newWorldRetain(t *testing.T, cfg fake.Config, retain uint64) *world {
	w := &world{t: t, notices: map[string][]channel.Notice{}}
	w.notify = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.observe(body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h := w.handler.Load()
		if h == nil {
			http.Error(rw, "starting", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(rw, r)
	}))
	cfg.Secret = secret
	var err error
	if w.fake, err = fake.Start("127.0.0.1:0", cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if w.store, err = storage.Open(dir, storage.Options{Shards: 1, CacheBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if w.seq, err = events.Start(w.store, events.Config{RetainEvents: retain, Fatal: func(err error) { t.Error(err) }}); err != nil {
		t.Fatal(err)
	}
	if w.ledger, err = actors.Start(w.store, actors.Config{Shards: 1, Events: w.seq}); err != nil {
		t.Fatal(err)
	}
	if w.setup, err = payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"bank"}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	client := channel.NewHTTPClient(w.fake.URL(), w.notify.URL+payments.NotifyPath+"bank", hc)
	w.engine, err = payments.Start(w.store, w.ledger, payments.Config{Setup: w.setup,
		Clients: map[string]channel.Client{"bank": client}, Secrets: map[string][]byte{"bank": secret},
		Gateway: gateway.Config{Timeout: 300 * time.Millisecond, RateLimit: 1e6, Burst: 1000, MaxInFlight: 32},
		Tick:    20 * time.Millisecond, Events: w.seq})
	if err != nil {
		t.Fatal(err)
	}
	h := w.engine.NotifyHandler(map[string][]byte{"bank": secret})
	w.handler.Store(&h)
	t.Cleanup(func() {
		w.handler.Store(nil)
		w.seq.EndFollowers()
		if err := w.engine.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		w.ledger.Stop()
		w.seq.Stop()
		w.notify.Close()
		_ = w.fake.Close(context.Background())
		if err := w.store.Close(); err != nil {
			t.Error(err)
		}
	})
	rs, err := w.ledger.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 2001}})
	if err != nil || rs[0] != ledger.AccountResultOK {
		t.Fatal(err, rs)
	}
	return w
}

// observe notes the pay notices of a body the channel posted.
func (w *world) observe(body []byte) {
	var ns []struct {
		Op, OrderNo, Txn, Status string
		Amount                   uint64
	}
	type wire = struct {
		Op      string `json:"op"`
		OrderNo string `json:"order_no"`
		Txn     string `json:"txn"`
		Status  string `json:"status"`
		Amount  uint64 `json:"amount"`
	}
	var many []wire
	if channel.IsNoticeArray(body) {
		_ = json.Unmarshal(body, &many)
	} else {
		var one wire
		if json.Unmarshal(body, &one) == nil {
			many = append(many, one)
		}
	}
	for _, n := range many {
		ns = append(ns, struct {
			Op, OrderNo, Txn, Status string
			Amount                   uint64
		}{n.Op, n.OrderNo, n.Txn, n.Status, n.Amount})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range ns {
		if n.Op == "pay" && n.Status == "succeeded" {
			w.notices[n.OrderNo] = append(w.notices[n.OrderNo], channel.Notice{OrderNo: n.OrderNo, Txn: n.Txn,
				Amount: n.Amount})
		}
	}
}

// expected is what the channel did wrong, by biz id: the oracle, from the notices alone.
func (w *world) expected(orders map[uint64]string, amount uint64) map[string][]recon.Kind {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]recon.Kind{}
	for id, biz := range orders {
		var txns []string
		var kinds []recon.Kind
		for _, n := range w.notices[payment.OrderNo(id)] {
			if slices.Contains(txns, n.Txn) {
				continue // a duplicate callback: the same txn again
			}
			txns = append(txns, n.Txn)
			if len(txns) == 1 && n.Amount != amount {
				kinds = append(kinds, recon.KindAmount)
			}
			if len(txns) == 2 {
				kinds = append(kinds, recon.KindDuplicate)
			}
		}
		if len(kinds) > 0 {
			slices.Sort(kinds)
			out[biz] = kinds
		}
	}
	return out
}

func (w *world) recharge(from, n int, amount uint64) map[uint64]string {
	reqs := make([]payment.Request, n)
	for i := range reqs {
		biz := fmt.Sprintf("biz-%03d", from+i)
		reqs[i] = payment.Request{Key: biz, BizID: biz, Form: payment.Recharge, Ledger: 1, Amount: amount, To: 1,
			Channel: "bank", ChannelAccount: "card-1"}
	}
	rs, err := w.engine.Create(reqs)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[uint64]string{}
	for i, r := range rs {
		if r.Result != payment.ResultOK {
			w.t.Fatalf("order %d: %v", i, r.Result)
		}
		out[r.Order.ID] = reqs[i].BizID
	}
	return out
}

// settle waits until every order is final and its exceptions settled.
func (w *world) settle(orders map[uint64]string) {
	w.t.Helper()
	var ids []uint64
	for id := range orders {
		ids = append(ids, id)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		os, err := w.engine.Orders(ids)
		if err != nil {
			w.t.Fatal(err)
		}
		done := true
		for _, o := range os {
			done = done && o != nil && o.State.Final() && !o.Active()
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatal("orders did not settle")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) start(t *testing.T) *Runner {
	r, err := Start(Config{Seq: w.seq, Store: w.store, Setup: w.setup, Matcher: recon.Config{Window: recon.WindowMin},
		Grace: time.Second, Confirm: func(biz string) ([]payment.Difference, error) {
			rec, err := w.engine.Reconcile(biz)
			return rec.Differences, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// quiet waits until the runner has read every event and closed every window.
func quiet(t *testing.T, r *Runner) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.Lag() > 0 || r.Stats.Tracked.Load() > 0 || r.Stats.Checkpoint.Load()+1 < r.Stats.Next.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("reconciliation did not catch up: lag %d tracked %d checkpoint %d next %d", r.Lag(),
				r.Stats.Tracked.Load(), r.Stats.Checkpoint.Load(), r.Stats.Next.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorded is every finding in the store, by biz id.
func recorded(t *testing.T, s *storage.Store) (map[string][]recon.Kind, []*storage.ReconFinding) {
	v := s.Snapshot()
	defer v.Close()
	out := map[string][]recon.Kind{}
	var all []*storage.ReconFinding
	if err := v.ReconFindings(true, "", "", 0, func(f *storage.ReconFinding) bool {
		out[f.BizID] = append(out[f.BizID], f.Kind)
		all = append(all, f)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range out {
		slices.Sort(k)
	}
	return out, all
}

func channelConfig() fake.Config {
	return fake.Config{Seed: 42, Latency: 5 * time.Millisecond, MismatchRate: 0.2, DupPayRate: 0.2,
		DupCallbackRate: 0.3, CallbackBackoff: 50 * time.Millisecond}
}

// TestInjectedAnomalies: through the real engine and a simulated channel that pays wrong
// amounts, twice, and calls back twice, every anomaly the channel made is recorded exactly once
// and nothing else; a restart in the middle (windows open) reports nothing twice.
func TestInjectedAnomalies(t *testing.T) {
	const amount = 1000
	w := newWorld(t, channelConfig())
	r := w.start(t)
	orders := w.recharge(0, 30, amount)
	for deadline := time.Now().Add(10 * time.Second); r.Stats.Tracked.Load() == 0 || r.Stats.Next.Load() == 1; {
		if time.Now().After(deadline) {
			t.Fatal("no window opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Stop() // a restart with windows open (a window lasts 1s of event time and 1s of grace)
	first := r.Stats.Checkpoint.Load()
	if r.Stats.Tracked.Load() == 0 || first+1 >= r.Stats.Next.Load() {
		t.Fatalf("no window open at the restart: tracked %d, checkpoint %d, next %d", r.Stats.Tracked.Load(), first,
			r.Stats.Next.Load())
	}
	r = w.start(t)
	defer r.Stop()
	for id, biz := range w.recharge(30, 30, amount) {
		orders[id] = biz
	}
	w.settle(orders)
	quiet(t, r)
	want := w.expected(orders, amount)
	got, all := recorded(t, w.store)
	if len(want) == 0 {
		t.Fatal("the channel made no anomaly: the test shows nothing")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		for _, f := range all {
			t.Logf("%s %s first=%d %v", f.BizID, f.Kind, f.First, f.Differences)
		}
		t.Fatalf("findings\n%v\nwant\n%v", got, want)
	}
	for _, f := range all {
		if f.Resolved || len(f.Differences) == 0 || f.Created == 0 {
			t.Fatalf("finding %+v", f)
		}
	}
	t.Logf("%d biz ids, %d with anomalies, checkpoint at the restart %d, matched %d", len(orders), len(want), first,
		r.Stats.Matched.Load())
	// A third run from the checkpoint records nothing new.
	r.Stop()
	r = w.start(t)
	quiet(t, r)
	if n := r.Stats.Recorded.Load(); n != 0 {
		t.Fatalf("a restart recorded %d findings again", n)
	}
	if again, _ := recorded(t, w.store); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatalf("after a restart\n%v\nwant\n%v", again, got)
	}
}

// TestRestartFromZero: with the checkpoint lost (moved back to 0: a run that starts over from
// the first event), a run from zero records nothing new: the same events make the same
// findings; resolving is durable and refused twice.
func TestRestartFromZero(t *testing.T) {
	w := newWorld(t, channelConfig())
	r := w.start(t)
	orders := w.recharge(0, 20, 500)
	w.settle(orders)
	quiet(t, r)
	r.Stop()
	got, all := recorded(t, w.store)
	if len(all) == 0 {
		t.Fatal("no findings: the test shows nothing")
	}
	f := all[0]
	if _, err := w.store.ResolveReconFinding(f.BizID, f.Kind, f.First, "refunded by ops ticket 7", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.ResolveReconFinding(f.BizID, f.Kind, f.First, "again", 2); err == nil {
		t.Fatal("resolved twice")
	}
	if _, err := w.store.ResolveReconFinding("nope", f.Kind, f.First, "", 2); err == nil {
		t.Fatal("resolved a finding that does not exist")
	}
	if _, err := w.store.CommitRecon(storage.ReconWrite{Checkpoint: 0, Now: 9}); err != nil {
		t.Fatal(err)
	}
	r = w.start(t)
	defer r.Stop()
	quiet(t, r)
	// It reconciled the old events again (from the old checkpoint there would be none to
	// match): it started from zero. (Its next sequence, read right after the start, raced
	// with the run: it had moved on already on a busy machine.)
	if r.Stats.Matched.Load() == 0 || r.Stats.Unmatched[1].Load()+r.Stats.Unmatched[0].Load() == 0 {
		t.Fatalf("the run from zero reconciled nothing again: matched %d", r.Stats.Matched.Load())
	}
	if n := r.Stats.Recorded.Load(); n != 0 {
		t.Fatalf("the run from zero recorded %d findings again", n)
	}
	after, all2 := recorded(t, w.store)
	if fmt.Sprint(after) != fmt.Sprint(got) || !all2[0].Resolved || all2[0].Note != "refunded by ops ticket 7" {
		t.Fatalf("recording again changed the findings: %v %+v", after, all2[0])
	}
}
