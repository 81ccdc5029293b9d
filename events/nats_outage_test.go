package events_test

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgercore/ledger/events"
)

func natsOn(t *testing.T, dir string, port int) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s
}

// TestNATSOutageLongerThanRetentionLosesNothing (regression): retention trimmed by count
// only, with no regard for the NATS publisher's position. During a NATS outage the ledger
// went on; once retention passed what JetStream acknowledged, the publisher (back online) got
// TrimmedError from Follow, logged it and stopped for good: the events between were never
// published, nor anything after them. Retention now stops at the publisher's position.
func TestNATSOutageLongerThanRetentionLosesNothing(t *testing.T) {
	dir := t.TempDir()
	ns := natsOn(t, dir, -1)
	url := ns.ClientURL()
	n := startNode(t, vfs.NewMem(), 300)
	defer n.stop(t)
	openAccounts(t, n.l)
	p := publish(t, url, n.seq)
	defer p.Stop()
	workload(t, n.l, rand.New(rand.NewPCG(21, 22)), 1000, 2)
	waitAcked(t, p, n.seq)
	acked := p.Stats.Acked.Load()

	// The outage: far more events than retention keeps, and several retention runs.
	portN := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	workload(t, n.l, rand.New(rand.NewPCG(23, 24)), 100000, 20)
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); {
		if h := n.seq.Horizon(); h > acked+1 {
			t.Fatalf("retention trimmed to %d, past the publisher's next sequence %d", h, acked+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n.seq.Stats.RetentionHeld.Load() == 0 {
		t.Errorf("retention held back by the publisher, RetentionHeld is 0 (last %d, horizon %d)", n.seq.Last(), n.seq.Horizon())
	}

	// NATS comes back on the same port and store.
	ns = natsOn(t, dir, portN)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	deadline := time.Now().Add(15 * time.Second)
	for p.Stats.Acked.Load() < n.seq.Last() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got, last := p.Stats.Acked.Load(), n.seq.Last(); got < last {
		t.Fatalf("after the outage NATS acknowledged %d of %d (horizon %d, acknowledged before the outage %d)",
			got, last, n.seq.Horizon(), acked)
	}
	readStream(t, ns.ClientURL(), n.seq.Last())
	// Once published, retention goes on.
	for deadline := time.Now().Add(5 * time.Second); n.seq.Horizon() <= acked+1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n.seq.Horizon() <= acked+1 {
		t.Fatalf("retention did not resume after the publisher caught up (horizon %d)", n.seq.Horizon())
	}
}

// TestSubscribersDoNotStarveNATSPublisher (regression): the NATS publisher counted against
// FollowersMax like any gRPC subscriber, and Follow's ErrTooManyFollowers ended it for good.
// Clients holding FollowersMax subscriptions when the publisher attached stopped
// publication to NATS until the next restart. The publisher's slot is reserved now (and it
// starts again after a failure).
func TestSubscribersDoNotStarveNATSPublisher(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	openAccounts(t, n.l)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range events.FollowersMax {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.seq.Follow(ctx, 1, events.FollowOptions{}, func([]events.Event) error { return nil })
		}()
	}
	for n.seq.Stats.Followers.Load() < events.FollowersMax {
		time.Sleep(time.Millisecond)
	}
	p := publish(t, ns.ClientURL(), n.seq)
	defer p.Stop()
	// The publisher attaches beside them, while they follow.
	for deadline := time.Now().Add(10 * time.Second); n.seq.Stats.Followers.Load() <= events.FollowersMax; {
		if time.Now().After(deadline) {
			t.Fatalf("the publisher did not attach beside %d subscribers", events.FollowersMax)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // the subscribers leave
	wg.Wait()
	workload(t, n.l, rand.New(rand.NewPCG(25, 26)), 1000, 2)
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats.Acked.Load() < n.seq.Last() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got, last := p.Stats.Acked.Load(), n.seq.Last(); got < last {
		t.Fatalf("NATS acknowledged %d of %d (%d subscribers followed when it started)", got, last, events.FollowersMax)
	}
}

// TestNATSPublisherStartsAgainAfterFailure: a publisher whose Follow fails (here: the reserved
// slots are taken) starts again, with backoff, instead of stopping for good.
func TestNATSPublisherStartsAgainAfterFailure(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	openAccounts(t, n.l)
	ctx, cancel := context.WithCancel(context.Background())
	taken := make(chan error, events.ReservedFollowersMax)
	for range events.ReservedFollowersMax {
		go func() {
			taken <- n.seq.Follow(ctx, 1, events.FollowOptions{Reserved: true}, func([]events.Event) error { return nil })
		}()
	}
	for n.seq.Stats.Followers.Load() < events.ReservedFollowersMax {
		time.Sleep(time.Millisecond)
	}
	p := publish(t, ns.ClientURL(), n.seq)
	defer p.Stop()
	for deadline := time.Now().Add(10 * time.Second); p.Stats.Restarts.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the publisher, refused, started again %d times", p.Stats.Restarts.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for range events.ReservedFollowersMax {
		<-taken
	}
	workload(t, n.l, rand.New(rand.NewPCG(27, 28)), 500, 2)
	waitAcked(t, p, n.seq)
	readStream(t, ns.ClientURL(), n.seq.Last())
}

// TestNATSMessagesBoundedByBytes: a batch whose encoding passes PublishBytesMax is cut into
// several messages (a message past the server's max_payload is refused for ever), each
// naming its own consecutive range; an existing stream's configuration is left as it is.
func TestNATSMessagesBoundedByBytes(t *testing.T) {
	ns := startNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ledger.events"}, Duplicates: 7 * time.Minute,
		MaxMsgSize: 1 << 20}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	openAccounts(t, n.l)
	const eventBytes = 100 << 10
	p, err := events.StartPublisher(n.seq, events.PublisherConfig{URL: ns.ClientURL(), Stream: "EVENTS", Subject: "ledger.events",
		Encode: func(dst []byte, batch []events.Event) ([]byte, error) {
			return append(dst, make([]byte, eventBytes*len(batch))...), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	workload(t, n.l, rand.New(rand.NewPCG(29, 30)), 1000, 2)
	waitAcked(t, p, n.seq)
	acked := p.Stats.Acked.Load()
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != cfg.Duplicates || info.Config.MaxMsgSize != cfg.MaxMsgSize {
		t.Errorf("the stream's configuration was changed: %+v", info.Config)
	}
	next := uint64(1)
	for s := uint64(1); s <= info.State.LastSeq; s++ {
		m, err := st.GetMsg(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := strconv.ParseUint(m.Header.Get(jetstream.MsgIDHeader), 10, 64)
		last, _ := strconv.ParseUint(m.Header.Get(events.HeaderLast), 10, 64)
		if first != next || last < first || len(m.Data) != int(last-first+1)*eventBytes || len(m.Data) > events.PublishBytesMax {
			t.Fatalf("message %d: %d..%d, %d bytes (expected from %d)", s, first, last, len(m.Data), next)
		}
		next = last + 1
	}
	if next <= acked {
		t.Fatalf("the stream holds up to %d, %d acknowledged", next-1, acked)
	}
}
