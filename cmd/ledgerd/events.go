package main

import (
	"flag"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
)

// natsFlags configure the publication of the event stream to NATS JetStream.
type natsFlags struct {
	url, stream, subject string
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "events-nats", "", "NATS URL: publish the event stream to JetStream there (empty: off)")
	fs.StringVar(&n.stream, "events-nats-stream", "LEDGER_EVENTS", "the JetStream stream of --events-nats (made if missing)")
	fs.StringVar(&n.subject, "events-nats-subject", "ledger.events", "the subject of --events-nats")
}

type publisher struct{ p *events.Publisher }

func (p publisher) stop() {
	if p.p != nil {
		p.p.Stop()
	}
}

// startPublisher publishes the stream to NATS when --events-nats is given.
func startPublisher(n natsFlags, seq *events.Sequencer, m *api.Metrics) (publisher, error) {
	if n.url == "" {
		return publisher{}, nil
	}
	var scratch api.EncodeScratch // the publisher encodes one batch at a time
	p, err := events.StartPublisher(seq, events.PublisherConfig{URL: n.url, Stream: n.stream, Subject: n.subject,
		Encode: func(dst []byte, batch []events.Event) ([]byte, error) {
			return api.EncodeEvents(dst, batch, &scratch), nil
		},
		Logger: slog.Default()})
	if err != nil {
		return publisher{}, err
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_events_nats_acked_sequence",
			Help: "The last sequence NATS JetStream acknowledged (--events-nats)."},
			func() float64 { return float64(p.Stats.Acked.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_events_nats_lag_events",
			Help: "Events durable and not yet acknowledged by NATS JetStream."},
			func() float64 { return float64(seq.Last() - min(seq.Last(), p.Stats.Acked.Load())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_events_nats_errors_total",
			Help: "Attempts to publish to NATS JetStream that failed (each is retried)."},
			func() float64 { return float64(p.Stats.Errors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_events_nats_restarts_total",
			Help: "Times the NATS publisher started again after a failure (logged)."},
			func() float64 { return float64(p.Stats.Restarts.Load()) }),
	)
	return publisher{p: p}, nil
}
