package events_test

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/events"
)

// A process restarted during a NATS outage holds retention from its start (HoldRetention, as
// ledgerd with --events-nats), so its first retention runs, before the publisher starts,
// trim nothing NATS never got (found in review: the hold was taken only when the publisher
// started, a second or more later, and the publisher then refused the stream for good).
func TestRestartDuringNATSOutageKeepsUnpublished(t *testing.T) {
	dir := t.TempDir()
	ns := natsOn(t, dir, -1)
	fs := vfs.NewMem()
	n := startNode(t, fs, 300)
	openAccounts(t, n.l)
	p := publish(t, ns.ClientURL(), n.seq)
	workload(t, n.l, rand.New(rand.NewPCG(21, 22)), 1000, 2)
	waitAcked(t, p, n.seq)
	acked := p.Stats.Acked.Load()
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	workload(t, n.l, rand.New(rand.NewPCG(23, 24)), 20000, 20)
	p.Stop()
	n.stop(t)

	// The restart: events.Start, then the rest of startup takes over a second (actors, payments).
	n = startNodeWith(t, fs, events.Config{RetainEvents: 300, HoldRetention: true})
	defer n.stop(t)
	// Wait until retention has run and been held (it runs every second): a tick late on a
	// busy machine must not pass the test with the hold broken.
	for deadline := time.Now().Add(10 * time.Second); n.seq.Stats.RetentionHeld.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("retention never ran held (horizon %d, NATS's next %d)", n.seq.Horizon(), acked+1)
		}
	}
	if h := n.seq.Horizon(); h > acked+1 {
		t.Errorf("before the publisher started, retention trimmed to %d past NATS's next %d", h, acked+1)
	}
	ns = natsOn(t, dir, port)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	p = publish(t, ns.ClientURL(), n.seq)
	defer p.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats.Acked.Load() < n.seq.Last() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got, last := p.Stats.Acked.Load(), n.seq.Last(); got < last {
		t.Fatalf("NATS acknowledged %d of %d (horizon %d)", got, last, n.seq.Horizon())
	}
}
