package bench

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTinyRuns runs the harness on tiny workloads in each mode and checks what it reports:
// counts, the balance check and the JSON and HTML outputs (never a speed).
func TestTinyRuns(t *testing.T) {
	for name, c := range map[string]Config{
		"uniform grpc":    {Distribution: Uniform, Batch: 100, Concurrency: 3},
		"prepare ahead":   {Distribution: Uniform, Batch: 100, Concurrency: 3, PrepareAhead: true},
		"hot in process":  {Distribution: Hot, HotAccounts: 2, HotPercent: 90, HotFlagged: true, Batch: 64, Concurrency: 2, InProcess: true},
		"zipf pending":    {Distribution: Zipf, Batch: 50, Concurrency: 2, Pending: true},
		"batch 1 shadow":  {Distribution: Uniform, Batch: 1, Concurrency: 16, Shadow: true},
		"streams":         {Distribution: Uniform, Batch: 1, Concurrency: 16, Streams: 3},
		"streams pending": {Distribution: Zipf, Batch: 7, Concurrency: 4, Streams: 2, Pending: true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c.Accounts, c.Transfers, c.Shards, c.Seed = 50, 1001, 2, 7
			c.DataDir = filepath.Join(dir, "data")
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if res.TransfersOK != int64(c.Transfers) || res.TransfersFailed != 0 || res.RequestErrors != 0 {
				t.Errorf("counts: %d ok, %d failed, %d errors (%s)", res.TransfersOK, res.TransfersFailed, res.RequestErrors, res.FirstError)
			}
			if !strings.HasPrefix(res.BalanceCheck, "ok: debits = credits = acknowledged amount") {
				t.Errorf("balance check: %s", res.BalanceCheck)
			}
			if want := c.PrepareAhead; res.PrepareAhead != want {
				t.Errorf("prepare_ahead %v; want %v", res.PrepareAhead, want)
			}
			if c.Streams > 0 && res.StreamAnswers != res.Requests {
				t.Errorf("%d requests, %d answered on the streams", res.Requests, res.StreamAnswers)
			}
			if res.LatencyP50Ms <= 0 || res.LatencyMaxMs < res.LatencyP99Ms || res.TransfersPerSecond <= 0 {
				t.Errorf("latencies: %+v", res)
			}
			jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
			if err := res.WriteJSON(jsonPath); err != nil {
				t.Fatal(err)
			}
			if err := res.WriteHTML(htmlPath); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(jsonPath)
			var fields map[string]any
			if err := json.Unmarshal(b, &fields); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"transfers_per_second", "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
				"transfers_ok", "transfers_failed"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("JSON lacks %s", k)
				}
			}
			if fields["transfers_ok"].(float64) != float64(c.Transfers) {
				t.Errorf("JSON transfers_ok = %v", fields["transfers_ok"])
			}
			page, _ := os.ReadFile(htmlPath)
			if !strings.Contains(string(page), "<svg") || !strings.Contains(string(page), "balance check") {
				t.Errorf("HTML report lacks its charts or summary")
			}
			if c.Shadow {
				if _, err := os.Stat(filepath.Join(c.DataDir, "shadow")); err != nil {
					t.Errorf("shadow run did not use a shadow store: %v", err)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	c := Config{Accounts: 1, Transfers: 0, Batch: 9000, Concurrency: 0, Distribution: "bogus", Shards: 0}
	err := c.Validate()
	if err == nil {
		t.Fatal("a bad configuration passed")
	}
	for _, want := range []string{"--accounts", "--transfers", "--batch", "--concurrency", "--distribution", "--shards"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no complaint about %s in %v", want, err)
		}
	}
}

func TestMedian(t *testing.T) {
	runs := []*Result{{TransfersPerSecond: 3, LatencyP99Ms: 9}, {TransfersPerSecond: 1, LatencyP99Ms: 5},
		{TransfersPerSecond: 2, LatencyP99Ms: 7}}
	m := Median(runs)
	if m.TransfersPerSecond != 2 || m.LatencyP99Ms != 7 || m.RunsMin != 1 || m.RunsMax != 3 ||
		m.P99Min != 5 || m.P99Max != 9 || len(m.Runs) != 3 {
		t.Errorf("median: %+v", m)
	}
}

// TestTenthRates: each tenth of a run's transfers is timed once, however the answers' counts
// fall across the tenths' bounds; a run cut short, or one whose answers reach two tenths at
// once, has no rates.
func TestTenthRates(t *testing.T) {
	r := &runner{cfg: &Config{Transfers: 100}, start: time.Now()}
	for range 18 { // 90 of 100: the tenth tenth not reached
		time.Sleep(time.Millisecond)
		r.answered(5)
	}
	if got := r.tenthRates(); got != nil {
		t.Fatalf("a run cut short: %v, want none", got)
	}
	time.Sleep(time.Millisecond)
	r.answered(10)
	got := r.tenthRates()
	if len(got) != 10 {
		t.Fatalf("%d tenths, want 10", len(got))
	}
	for k, rate := range got {
		if rate <= 0 || rate > 10/time.Millisecond.Seconds() {
			t.Fatalf("tenth %d: %v transfers/s, for 10 transfers a millisecond or more apart", k+1, rate)
		}
	}

	// Answers that overshoot a tenth's bound count what they held, and failures do not count:
	// 15 answers of 7 (a tenth is 10.5) at 1 ms each, the fifth all failed.
	r = &runner{cfg: &Config{Transfers: 105}, start: time.Now()}
	for i := range 15 {
		time.Sleep(time.Millisecond)
		if i == 4 {
			r.failed.Add(7)
		}
		r.answered(7)
	}
	var ok int64
	for k, m := range r.tenths {
		if m.at == 0 {
			t.Fatalf("tenth %d never reached", k+1)
		}
		ok = m.answered - m.fail
	}
	if ok != 105-7 {
		t.Fatalf("%d succeeded by the last tenth, want %d", ok, 105-7)
	}
	// The rates, over their tenths' times, give back what succeeded (not 105 tenths' worth).
	sum, last := 0.0, time.Duration(0)
	for k, rate := range r.tenthRates() {
		sum += rate * (r.tenths[k].at - last).Seconds()
		last = r.tenths[k].at
	}
	if math.Abs(sum-float64(105-7)) > 1e-6 {
		t.Fatalf("the tenths' rates add up to %v transfers, want %d", sum, 105-7)
	}

	r = &runner{cfg: &Config{Transfers: 25}, start: time.Now()}
	for _, n := range []int64{1, 2, 7, 1, 9, 5} {
		time.Sleep(time.Millisecond)
		r.answered(n)
	}
	for k := range r.tenths {
		if r.tenths[k].at == 0 {
			t.Fatalf("tenth %d never reached", k+1)
		}
	}
	if got := r.tenthRates(); got != nil {
		t.Fatalf("answers that reached two tenths at once: %v, want none", got)
	}
}
