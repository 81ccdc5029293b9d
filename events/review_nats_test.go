package events_test

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/ledgercore/ledger/events"
)

func reviewNATS(t *testing.T, dir string, port int) *natsserver.Server {
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

// TestReviewNATSOutageLongerThanRetentionLosesEvents: retention trims by count only, with no
// regard for the NATS publisher's position. During a NATS outage the ledger goes on; once
// retention passes what JetStream acknowledged, the publisher (back online) gets
// TrimmedError from Follow, logs it and stops for good: the events between are never
// published, and nothing after them either, until a restart (which fails the same way).
func TestReviewNATSOutageLongerThanRetentionLosesEvents(t *testing.T) {
	dir := t.TempDir()
	ns := reviewNATS(t, dir, -1)
	url := ns.ClientURL()
	n := startNode(t, vfs.NewMem(), 300)
	defer n.stop(t)
	openAccounts(t, n.l)
	p := publish(t, url, n.seq)
	defer p.Stop()
	workload(t, n.l, rand.New(rand.NewPCG(21, 22)), 1000, 2)
	waitAcked(t, p, n.seq)
	acked := p.Stats.Acked.Load()

	// The outage.
	portN := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	workload(t, n.l, rand.New(rand.NewPCG(23, 24)), 100000, 20)
	for deadline := time.Now().Add(10 * time.Second); n.seq.Horizon() <= acked+1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n.seq.Horizon() <= acked+1 {
		t.Fatalf("retention did not pass the acknowledged %d (horizon %d)", acked, n.seq.Horizon())
	}

	// NATS comes back on the same port and store.
	ns = reviewNATS(t, dir, portN)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	deadline := time.Now().Add(15 * time.Second)
	for p.Stats.Acked.Load() < n.seq.Last() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got, last := p.Stats.Acked.Load(), n.seq.Last(); got < last {
		t.Fatalf("after the outage NATS acknowledged %d of %d (horizon %d, acknowledged before the outage %d): "+
			"events %d..%d are trimmed and never published; the publisher stopped", got, last, n.seq.Horizon(), acked,
			got+1, n.seq.Horizon()-1)
	}
}

// TestReviewSubscribersStarveNATSPublisher: the NATS publisher counts against FollowersMax
// like any gRPC subscriber, and Follow's ErrTooManyFollowers ends it for good (run logs it
// and returns). Clients holding FollowersMax subscriptions when the publisher attaches (at
// start, or while NATS is still unreachable and resume retries) stop publication to NATS
// until the next restart.
func TestReviewSubscribersStarveNATSPublisher(t *testing.T) {
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
	time.Sleep(500 * time.Millisecond) // the publisher attaches, and is refused
	cancel()                           // the subscribers leave
	wg.Wait()
	workload(t, n.l, rand.New(rand.NewPCG(25, 26)), 1000, 2)
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats.Acked.Load() < n.seq.Last() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got, last := p.Stats.Acked.Load(), n.seq.Last(); got < last {
		t.Fatalf("NATS acknowledged %d of %d: the publisher, refused while %d subscribers followed, never retried",
			got, last, events.FollowersMax)
	}
}
