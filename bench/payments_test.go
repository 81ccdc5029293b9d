package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTinyPayments runs the payments workload on a tiny configuration, over gRPC and in
// process, and checks that its counts add up: every order answered is accepted or refused,
// every accepted one became final, none is left in flight.
func TestTinyPayments(t *testing.T) {
	for name, inProcess := range map[string]bool{"grpc": false, "in process": true} {
		t.Run(name, func(t *testing.T) {
			c := Config{Workload: Payments, Accounts: 30, Orders: 3000, Batch: 20, Concurrency: 3, Shards: 2, Seed: 3,
				InProcess: inProcess, ChannelLatency: 2 * time.Millisecond, DrainTimeout: 20 * time.Second, RefundAfter: 50 * time.Millisecond,
				DataDir: filepath.Join(t.TempDir(), "data")}
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			res.WriteText(&sb)
			t.Log("\n" + sb.String())
			if !strings.HasPrefix(res.BalanceCheck, "ok:") {
				t.Errorf("order check: %s", res.BalanceCheck)
			}
			if res.OrdersAccepted+res.OrdersRefused != int64(c.Orders) || res.OrdersCompleted != res.OrdersAccepted ||
				res.OrdersInFlight != 0 || res.OrdersSucceeded+res.OrdersFailed != res.OrdersCompleted {
				t.Errorf("counts: %d accepted, %d refused, %d final (%d succeeded, %d failed), %d in flight",
					res.OrdersAccepted, res.OrdersRefused, res.OrdersCompleted, res.OrdersSucceeded, res.OrdersFailed,
					res.OrdersInFlight)
			}
			if res.RequestErrors != 0 || res.OrdersAccepted < int64(c.Orders)*9/10 {
				t.Errorf("%d request errors (%s), %d of %d accepted", res.RequestErrors, res.FirstError,
					res.OrdersAccepted, c.Orders)
			}
			for _, form := range []string{"pay", "recharge", "withdraw", "refund", "transfer"} {
				if res.OrdersAcceptedByForm[form] == 0 {
					t.Errorf("no %s accepted: %v", form, res.OrdersAcceptedByForm)
				}
			}
			if res.LatencyP50Ms <= 0 || res.OrdersCompletedPerSecond <= 0 {
				t.Errorf("figures: p50 %v, %v orders/s", res.LatencyP50Ms, res.OrdersCompletedPerSecond)
			}
		})
	}
}

// TestTransfersChannelDown runs the transfers workload with the payment layer's channel
// degraded and dead, with card payments alongside: the transfers all go through, and the
// payments are answered.
func TestTransfersChannelDown(t *testing.T) {
	for _, down := range []string{"", ChannelDegraded, ChannelDead} {
		t.Run("down="+down, func(t *testing.T) {
			c := Config{Distribution: Uniform, Accounts: 50, Transfers: 2000, Batch: 100, Concurrency: 2, Shards: 2,
				Seed: 1, PaymentLayer: true, ChannelDown: down, BackgroundOrders: 200, ChannelLatency: 2 * time.Millisecond,
				DataDir: filepath.Join(t.TempDir(), "data")}
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if res.TransfersOK != int64(c.Transfers) || !strings.HasPrefix(res.BalanceCheck, "ok") || !res.PaymentLayer {
				t.Errorf("%d ok, balance %s", res.TransfersOK, res.BalanceCheck)
			}
		})
	}
}

// TestOpenLoopPayments: with a rate the calls go out on their schedule, not as fast as
// answers come (1,000 orders at 500 a second: the last call falls due at 1.98 s), and every
// order is still accepted and final.
func TestOpenLoopPayments(t *testing.T) {
	c := Config{Workload: Payments, Accounts: 30, Orders: 1000, Batch: 10, Concurrency: 4, Shards: 1, Seed: 5, Rate: 500,
		ChannelLatency: 2 * time.Millisecond, DrainTimeout: 20 * time.Second, RefundAfter: 50 * time.Millisecond,
		DataDir: filepath.Join(t.TempDir(), "data")}
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.BalanceCheck, "ok:") || res.OrdersAccepted != int64(c.Orders) {
		t.Fatalf("order check: %s; %d accepted", res.BalanceCheck, res.OrdersAccepted)
	}
	if res.DurationSeconds < 1.98 || res.Rate != c.Rate {
		t.Fatalf("issued in %.2fs at offered rate %v: the schedule was not kept", res.DurationSeconds, res.Rate)
	}
	if res.LateMaxMs <= 0 || res.LateP50Ms > res.LateMaxMs {
		t.Fatalf("sent late p50 %v, max %v ms: lateness not measured", res.LateP50Ms, res.LateMaxMs)
	}
}
