package api

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (a server, a shard, a
// request waiting for a reply that never comes).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
