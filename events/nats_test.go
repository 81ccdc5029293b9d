package events_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func publish(t *testing.T, url string, seq *events.Sequencer) *events.Publisher {
	t.Helper()
	var scratch api.EncodeScratch
	p, err := events.StartPublisher(seq, events.PublisherConfig{URL: url, Stream: "EVENTS", Subject: "ledger.events",
		Encode: func(dst []byte, batch []events.Event) ([]byte, error) {
			return api.EncodeEvents(dst, batch, &scratch), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitAcked(t *testing.T, p *events.Publisher, seq *events.Sequencer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); p.Stats.Acked.Load() < seq.Last(); {
		if time.Now().After(deadline) {
			t.Fatalf("NATS acknowledged %d of %d", p.Stats.Acked.Load(), seq.Last())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readStream reads every message of the JetStream stream and checks that they carry the
// sequences 1..last once each, in order, each message's header naming its own range.
func readStream(t *testing.T, url string, last uint64) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	msgs := 0
	for n := uint64(1); next <= last; n++ {
		m, err := st.GetMsg(ctx, n)
		if err != nil {
			t.Fatalf("stream message %d (events up to %d read): %v", n, next-1, err)
		}
		msgs++
		var resp ledgerv1.SubscribeResponse
		if err := proto.Unmarshal(m.Data, &resp); err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != strconv.FormatUint(next, 10) {
			t.Fatalf("message %d has id %s, want %d", n, id, next)
		}
		for _, e := range resp.Events {
			if e.Sequence != next {
				t.Fatalf("message %d: event %d after %d", n, e.Sequence, next-1)
			}
			next++
		}
		if got := m.Header.Get(events.HeaderLast); got != strconv.FormatUint(next-1, 10) {
			t.Fatalf("message %d: %s %s, its events end at %d", n, events.HeaderLast, got, next-1)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != uint64(msgs) {
		t.Fatalf("stream holds %v messages, %d carry events 1..%d (%v)", info.State.Msgs, msgs, last, err)
	}
	return msgs
}

// TestNATSPublisher: the stream reaches JetStream in order, once, with message ids; after a
// restart of the ledger and of the publisher it resumes after what JetStream holds (no
// message twice, though the duplicates window would also catch one); a copy of a message
// with the same id is dropped by JetStream.
func TestNATSPublisher(t *testing.T) {
	ns := startNATS(t)
	url := ns.ClientURL()
	fs := vfs.NewMem()
	n := startNode(t, fs, 0)
	openAccounts(t, n.l)
	p := publish(t, url, n.seq)
	workload(t, n.l, rand.New(rand.NewPCG(7, 8)), 1000, 20)
	waitAcked(t, p, n.seq)
	p.Stop()
	// Meanwhile the ledger goes on: these are published after the restart.
	workload(t, n.l, rand.New(rand.NewPCG(9, 10)), 100000, 5)
	n.stop(t)
	n = startNode(t, fs, 0)
	defer n.stop(t)
	workload(t, n.l, rand.New(rand.NewPCG(11, 12)), 200000, 5)
	p = publish(t, url, n.seq)
	waitAcked(t, p, n.seq)
	p.Stop()
	// Holds expiring go on making events: the stream ends at what was acknowledged.
	acked := p.Stats.Acked.Load()
	msgs := readStream(t, url, acked)

	// A copy of the first message, published again, is dropped by its id.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	msg := nats.NewMsg("ledger.events")
	msg.Header.Set(jetstream.MsgIDHeader, "1")
	msg.Data = []byte("copy")
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil || !ack.Duplicate {
		t.Fatalf("a copy of message 1: %+v %v, want a duplicate", ack, err)
	}
	if got := readStream(t, url, acked); got != msgs {
		t.Fatalf("%d messages after the copy, %d before", got, msgs)
	}
}

// TestNATSForeignStream: a stream holding sequences past the store's is not published to.
func TestNATSForeignStream(t *testing.T) {
	ns := startNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ledger.events"}}); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("ledger.events")
	msg.Header.Set(events.HeaderLast, "1000000")
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	openAccounts(t, n.l)
	p := publish(t, ns.ClientURL(), n.seq)
	workload(t, n.l, rand.New(rand.NewPCG(1, 1)), 1000, 2)
	// The publisher refuses the stream for good (run returns): Stop then returns at once.
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher did not refuse the foreign stream")
	}
	p.Stop()
	if p.Stats.Acked.Load() != 0 {
		t.Fatalf("published %d to a foreign stream", p.Stats.Acked.Load())
	}
	st, _ := js.Stream(ctx, "EVENTS")
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("foreign stream: %+v %v", info, err)
	}
}
