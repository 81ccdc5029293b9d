package payments

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger/payment"
)

// An order's count carries its biz id as the exemplar for one success in ExemplarEvery and
// for every failure.
func TestFinalExemplars(t *testing.T) {
	var picked uint64
	n := map[uint64]int{} // picked ids by residue mod 4, as four shards own them
	for id := uint64(1); id <= 64*1000; id++ {
		if sampled(id) {
			n[id%4]++
			if picked == 0 && !sampled(id+1) {
				picked = id
			}
		}
	}
	for r := range uint64(4) {
		if n[r] < 150 || n[r] > 350 {
			t.Fatalf("ids picked by residue mod 4: %v; want about 250 each", n)
		}
	}
	for _, tc := range []struct {
		id    uint64
		state payment.State
		want  string
	}{{picked, payment.Succeeded, "biz-a"}, {picked + 1, payment.Succeeded, ""}, {picked + 1, payment.Failed, "biz-a"}} {
		m := NewMetrics()
		m.final(finalOf(&payment.Order{ID: tc.id, BizID: "biz-a", Form: payment.Pay, State: tc.state}))
		var got dto.Metric
		if err := m.orders.WithLabelValues(payment.Pay.String(), tc.state.String(), payment.Result(0).String()).(interface {
			Write(*dto.Metric) error
		}).Write(&got); err != nil {
			t.Fatal(err)
		}
		ex := ""
		if e := got.GetCounter().GetExemplar(); e != nil && len(e.GetLabel()) == 1 {
			ex = e.GetLabel()[0].GetValue()
		}
		if got.GetCounter().GetValue() != 1 || ex != tc.want {
			t.Errorf("order %d %v: count %v, exemplar %q, want %q", tc.id, tc.state, got.GetCounter().GetValue(), ex, tc.want)
		}
	}
}

// Each call's share of new orders on a shard is timed once, in three stages that add up to
// no more than the call took, each as long as what held it; a repeated request or a refused
// one writes no order and is not timed.
func TestVoucherStages(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 2 * time.Millisecond})
	w.openAccounts()
	const inbox, round, commit = 0, 1, 2
	stages := func() (count [3]uint64, sum [3]float64) {
		t.Helper()
		w.probe(func(*shard) {}) // every shard done with the rounds that answered so far
		for i, st := range []string{"inbox", "round", "commit"} {
			var m dto.Metric
			if err := w.engine.metrics.voucherSeconds.WithLabelValues(st).(prometheus.Metric).Write(&m); err != nil {
				t.Fatal(err)
			}
			count[i], sum[i] = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
		return count, sum
	}
	transfer := func(key string, amount uint64) payment.Request {
		return payment.Request{Key: key, Form: payment.Transfer, Ledger: 1, Amount: amount, From: alice, To: bob}
	}
	// timed makes one call and answers how many times each stage was timed for it and how
	// long, and how long the call took.
	timed := func(reqs ...payment.Request) (n [3]uint64, spent [3]float64, took float64) {
		t.Helper()
		c0, s0 := stages()
		start := time.Now()
		for i, r := range w.create(reqs...) {
			if r.Result != payment.ResultOK {
				t.Fatalf("%s: %v", reqs[i].Key, r.Result)
			}
		}
		took = time.Since(start).Seconds()
		c1, s1 := stages()
		for s := range 3 {
			n[s], spent[s] = c1[s]-c0[s], s1[s]-s0[s]
			if spent[s] < 0 {
				t.Fatalf("stage %d: %v s", s, spent[s])
			}
		}
		// Each shard's three stages lie within the call.
		if all := spent[inbox] + spent[round] + spent[commit]; all > took*float64(n[commit]) {
			t.Fatalf("%d shards' stages add up to %v s, the call took %v s", n[commit], all, took)
		}
		return n, spent, took
	}
	for _, key := range []string{"v1", "v2", "v3"} {
		if n, spent, _ := timed(transfer(key, 10)); n != [3]uint64{1, 1, 1} || spent[commit] == 0 {
			t.Fatalf("%s: timed %v, %v s", key, n, spent)
		}
	}
	// A call over both shards is timed once on each.
	var split []payment.Request
	shards := map[*shard]bool{}
	for i := range 8 {
		r := transfer(fmt.Sprintf("split-%d", i), 10)
		split = append(split, r)
		shards[w.engine.shardOfKey(&r)] = true
	}
	if len(shards) != 2 {
		t.Fatalf("8 keys on %d shards", len(shards))
	}
	if n, _, _ := timed(split...); n != [3]uint64{2, 2, 2} {
		t.Fatalf("a call over 2 shards timed %v", n)
	}
	// A repeat and a refusal are not timed: the next call with a new order is timed once.
	before, _ := stages()
	if r := w.create(transfer("v1", 10))[0]; r.Result != payment.ResultExists {
		t.Fatalf("repeat: %v", r.Result)
	}
	if r := w.create(transfer("v4", 0))[0]; r.Result == payment.ResultOK {
		t.Fatalf("an amount of 0 was taken")
	}
	if n, _, _ := timed(transfer("v5", 10)); n != [3]uint64{1, 1, 1} {
		t.Fatalf("timed %v", n)
	}
	if after, _ := stages(); after[commit]-before[commit] != 1 {
		t.Fatalf("a repeat and a refusal were timed: %d timings for one new order", after[commit]-before[commit])
	}
	// A slow commit shows in the commit stage.
	const hold = 30 * time.Millisecond
	hook := func(int) { time.Sleep(hold) }
	w.engine.commitHook.Store(&hook)
	_, spent, _ := timed(transfer("v6", 10))
	w.engine.commitHook.Store(nil)
	if spent[commit] < hold.Seconds() {
		t.Fatalf("a commit held %v: its stage took %v s", hold, spent[commit])
	}
	// A call that comes while the commit before it is held waits in the round stage: its
	// shard takes it at once, into the round sealed once that commit is durable.
	first := transfer("v8", 10)
	var second payment.Request
	for i := 0; ; i++ {
		if second = transfer(fmt.Sprintf("v9-%d", i), 10); w.engine.shardOfKey(&second) == w.engine.shardOfKey(&first) {
			break
		}
	}
	// Nothing else commits meanwhile: every order so far is final (their postings' rounds done).
	for deadline := time.Now().Add(10 * time.Second); w.engine.Stats().Active > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d orders still in flight", w.engine.Stats().Active)
		}
	}
	held := make(chan struct{})
	var once sync.Once
	holdFirst := func(int) {
		once.Do(func() { close(held) })
		time.Sleep(hold)
	}
	_, s0 := stages()
	w.engine.commitHook.Store(&holdFirst)
	firstDone := make(chan error, 1)
	go func() {
		rs, err := w.engine.Create([]payment.Request{first})
		if err == nil && rs[0].Result != payment.ResultOK {
			err = fmt.Errorf("%s: %v", first.Key, rs[0].Result)
		}
		firstDone <- err
	}()
	<-held
	if got := w.create(second)[0]; got.Result != payment.ResultOK {
		t.Fatalf("%s: %v", second.Key, got.Result)
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	w.engine.commitHook.Store(nil)
	if _, s1 := stages(); s1[round]-s0[round] < hold.Seconds()/2 {
		t.Fatalf("a call behind a commit held %v waited %v s in the round stage", hold, s1[round]-s0[round])
	}
	// A shard busy with something else shows in the inbox stage.
	r := transfer("v7", 10)
	busy := w.engine.shardOfKey(&r)
	_, s0 = stages()
	started, release := make(chan struct{}), make(chan struct{})
	busy.requests <- probeMsg{fn: func(*shard) { close(started); <-release }, done: make(chan struct{})}
	<-started
	go func() { time.Sleep(hold); close(release) }()
	if got := w.create(r)[0]; got.Result != payment.ResultOK {
		t.Fatalf("v7: %v", got.Result)
	}
	if _, s1 := stages(); s1[inbox]-s0[inbox] < hold.Seconds()/2 {
		t.Fatalf("the shard was busy for %v: the inbox stage took %v s", hold, s1[inbox]-s0[inbox])
	}
}
