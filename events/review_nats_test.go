package events_test

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	natsserver "github.com/nats-io/nats-server/v2/server"
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
