package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of the NATS messages: a message carries the consecutive events First..Last of
// one batch (see Follow), and JetStream de-duplicates it by its first sequence.
const (
	HeaderLast = "Ledger-Seq-Last"
	// publishRetryMin and publishRetryMax are the shortest and longest wait between two
	// attempts at one message, or two starts of the publisher.
	publishRetryMin = 50 * time.Millisecond
	publishRetryMax = 5 * time.Second
	// PublishBytesMax bounds a message's payload, under the NATS server's max_payload (1 MiB
	// by default): a batch of BatchEventsMax events of payment orders can be larger, and
	// is then cut into several messages (greedily, so the cuts are the same after a
	// restart, which resumes at one of them). An event larger than it goes alone.
	PublishBytesMax = 512 << 10
	// publishTimeout bounds one attempt (the acknowledgement included).
	publishTimeout = 10 * time.Second
)

// PublisherConfig configures the NATS JetStream publisher.
type PublisherConfig struct {
	URL     string
	Stream  string // the JetStream stream, made if missing
	Subject string // where the events go; the stream's only subject
	// Encode appends a batch's encoding to dst: a message's payload (a SubscribeResponse:
	// the API's encoding, so that a consumer decodes both the same way). The encoding of
	// a batch must be its events' encodings one after the other (a repeated field).
	Encode func(dst []byte, batch []Event) ([]byte, error)
	Logger *slog.Logger
}

// PublisherStats are the publisher's figures.
type PublisherStats struct {
	Acked    atomic.Uint64 // the last sequence JetStream acknowledged
	Errors   atomic.Uint64 // attempts that failed (each retried)
	Restarts atomic.Uint64 // times the publisher started again after a failure
}

// Publisher publishes the stream to NATS JetStream: one message per batch of events, with
// Nats-Msg-Id set to the batch's first sequence (JetStream drops a copy it has seen within
// its duplicates window) and Ledger-Seq-Last to its last. Batches are the same after a
// restart (Follow's boundaries depend only on the index), and a restart resumes after the
// last sequence the stream holds (its last message's Ledger-Seq-Last), so nothing is sent
// twice even past the window. Messages are published one at a time, each retried until
// acknowledged, so the stream holds them in order with no gap.
type Publisher struct {
	cfg    PublisherConfig
	seq    *Sequencer
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
	Stats  PublisherStats
	once   sync.Once
	hold   *RetentionHold // at the first sequence not acknowledged
}

// ErrStreamBehind: the JetStream stream ends below the oldest event this store keeps.
var ErrStreamBehind = errors.New("events: the JetStream stream is behind this store's retention")

// ErrForeignStream: the JetStream stream holds sequences this store never had.
var ErrForeignStream = errors.New("events: the JetStream stream holds sequences past this store's")

// StartPublisher connects (and keeps reconnecting) to NATS and publishes in the background.
// From now on retention keeps every event the publisher has not had acknowledged.
func StartPublisher(seq *Sequencer, cfg PublisherConfig) (*Publisher, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nc, err := nats.Connect(cfg.URL, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.Name("ledgerd events"))
	if err != nil {
		return nil, fmt.Errorf("events: nats %s: %w", cfg.URL, err)
	}
	hold := seq.StartHold()
	if hold == nil {
		hold = seq.HoldRetention()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{cfg: cfg, seq: seq, nc: nc, cancel: cancel, done: make(chan struct{}), hold: hold}
	go p.run(ctx)
	return p, nil
}

// Done is closed when the publisher has stopped: Stop was called, or it gave up (logged).
func (p *Publisher) Done() <-chan struct{} { return p.done }

// Stop stops publishing (what is not acknowledged is published after the restart).
func (p *Publisher) Stop() {
	p.once.Do(func() {
		p.cancel()
		<-p.done
		p.nc.Close()
	})
}

// run publishes until stopped: after a failure it can recover from (Follow refused, a read
// of the store failed) it starts again from what the stream holds, waiting longer after
// each failure in a row (up to publishRetryMax). It gives up only on a permanent error
// (logged): a foreign stream, or one that ends below this store's retention horizon.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	defer p.hold.Release()
	js, err := jetstream.New(p.nc)
	if err != nil {
		p.cfg.Logger.Error("events: jetstream", "err", err)
		return
	}
	wait := publishRetryMin
	for {
		before := p.Stats.Acked.Load()
		err := p.publish(ctx, js)
		switch {
		case ctx.Err() != nil || errors.Is(err, ErrStopped):
			return
		case errors.Is(err, errPermanent):
			p.cfg.Logger.Error("events: not publishing to NATS", "err", err)
			return
		}
		if p.Stats.Acked.Load() != before {
			wait = publishRetryMin
		}
		p.Stats.Restarts.Add(1)
		p.cfg.Logger.Warn("events: NATS publisher failed; starting again", "err", err, "in", wait,
			"acked", p.Stats.Acked.Load(), "lag_events", p.lag())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, publishRetryMax)
	}
}

// lag is how many durable events JetStream has not acknowledged.
func (p *Publisher) lag() uint64 { return p.seq.Last() - min(p.seq.Last(), p.Stats.Acked.Load()) }

// publish resumes after what the stream holds and publishes until it fails.
func (p *Publisher) publish(ctx context.Context, js jetstream.JetStream) error {
	var last uint64
	err := p.retry(ctx, func(ctx context.Context) error {
		var err error
		last, err = p.resume(ctx, js)
		return err
	})
	if err != nil {
		return err
	}
	p.hold.Move(last + 1)
	p.Stats.Acked.Store(last)
	p.cfg.Logger.Info("events: publishing to NATS", "stream", p.cfg.Stream, "subject", p.cfg.Subject, "after", last)
	return p.seq.Follow(ctx, last+1, FollowOptions{Reserved: true}, func(batch []Event) error {
		for len(batch) > 0 {
			// As many events as fit in PublishBytesMax (one at least).
			var data []byte
			n := 0
			for n < len(batch) {
				before := len(data)
				var err error
				if data, err = p.cfg.Encode(data, batch[n:n+1]); err != nil {
					return err
				}
				if len(data) > PublishBytesMax && n > 0 {
					data = data[:before]
					break
				}
				n++
			}
			first, end := batch[0].Seq, batch[n-1].Seq
			msg := nats.NewMsg(p.cfg.Subject)
			msg.Data = data
			msg.Header.Set(jetstream.MsgIDHeader, strconv.FormatUint(first, 10))
			msg.Header.Set(HeaderLast, strconv.FormatUint(end, 10))
			if err := p.retry(ctx, func(ctx context.Context) error { _, err := js.PublishMsg(ctx, msg); return err }); err != nil {
				return err
			}
			p.Stats.Acked.Store(end)
			p.hold.Move(end + 1)
			batch = batch[n:]
		}
		return nil
	})
}

// resume makes the stream if missing (an existing stream's configuration is the operator's:
// it is not changed) and reads the last sequence it holds.
func (p *Publisher) resume(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	st, err := js.Stream(ctx, p.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: p.cfg.Stream, Subjects: []string{p.cfg.Subject},
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	}
	if err != nil {
		return 0, err
	}
	m, err := st.GetLastMsgForSubject(ctx, p.cfg.Subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return p.seq.Horizon() - 1, nil
	}
	if err != nil {
		return 0, err
	}
	last, err := strconv.ParseUint(m.Header.Get(HeaderLast), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("events: the stream's last message has no %s: %w", HeaderLast, errPermanent)
	}
	if last > p.seq.Last() {
		return 0, fmt.Errorf("%w (%d, this store's last is %d): %w", ErrForeignStream, last, p.seq.Last(), errPermanent)
	}
	if h := p.seq.Horizon(); last+1 < h {
		// Published nowhere and deleted here (the publisher was off while retention ran, or
		// the stream lost messages): skipping them would be a silent gap.
		return 0, fmt.Errorf("%w: the stream ends at %d and this store keeps events from %d on: %d..%d are trimmed: %w",
			ErrStreamBehind, last, h, last+1, h-1, errPermanent)
	}
	return last, nil
}

var errPermanent = errors.New("not retried")

// retry runs fn until it succeeds, ctx ends or it fails for good, waiting longer after each
// failure (up to publishRetryMax).
func (p *Publisher) retry(ctx context.Context, fn func(context.Context) error) error {
	wait := publishRetryMin
	for {
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := fn(actx)
		cancel()
		if err == nil || errors.Is(err, errPermanent) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		p.Stats.Errors.Add(1)
		p.cfg.Logger.Warn("events: NATS publish failed; retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, publishRetryMax)
	}
}
