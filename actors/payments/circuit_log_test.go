package payments

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/internal/syncbuf"
)

// deadChannel answers nothing: every call fails as a whole, as a channel that is down.
type deadChannel struct{}

var errDead = errors.New("connection refused (test)")

func (deadChannel) Do(context.Context, channel.Request) (channel.Result, error) {
	return channel.Result{}, errDead
}

func (deadChannel) Query(context.Context, channel.Op, string) (channel.Result, error) {
	return channel.Result{}, errDead
}

// TestEngineLogsTheCircuit: a channel's gateway logs through the engine's logger, so when
// the channel goes down the operator reads that its circuit opened (gateway.Config.Logger
// left nil).
func TestEngineLogsTheCircuit(t *testing.T) {
	var logged syncbuf.Buffer // the engine's goroutines write it while the test reads
	r := newStubRigOf(t, deadChannel{}, time.Now(), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logged, nil))
		c.Gateway.Breaker = gateway.BreakerConfig{ConsecutiveFailures: 2, OpenFor: time.Hour}
	})
	for i, deadline := 0, time.Now().Add(10*time.Second); r.engine.Channels()[0].Circuit != gateway.CircuitOpen; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the circuit did not open: %+v", r.engine.Channels())
		}
		if i < 4 {
			r.recharge("r-"+string(rune('a'+i)), 100)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logged.String(), `level=WARN msg="gateway: channel circuit opened`) ||
		!strings.Contains(logged.String(), "channel=bank") {
		t.Fatalf("the engine's log does not say the circuit opened:\n%s", logged.String())
	}
}
