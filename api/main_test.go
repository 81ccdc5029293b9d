package api

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (a server, a shard, a
// request waiting for a reply that never comes).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Proto.Actor's dead-letter throttle: a timer goroutine that ends by itself shortly
		// after messages reach a stopped shard (legs in flight at Stop, which the outbox
		// re-sends on the next start).
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
