package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestScrapeMetrics: ledgerd's /metrics as the bench reads it: comments skipped, labels kept
// with the name, exemplars cut off, the stream's head found (or its absence reported).
func TestScrapeMetrics(t *testing.T) {
	body := `# HELP ledger_events_last_sequence The last sequence.
# TYPE ledger_events_last_sequence gauge
ledger_events_last_sequence 1.234567e+06
ledger_payment_orders_total{form="pay",result="ok",state="succeeded"} 7 # {trace_id="x"} 1 1.7e9
ledger_payment_orders_total{form="pay",result="channel_unavailable",state="failed"} 2
ledger_payment_orders_in_flight 3
process_cpu_seconds_total 12.5
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if last, err := scrapedLast(addr)(); err != nil || last != 1234567 {
		t.Fatalf("last %d %v", last, err)
	}
	oc, err := scrapeOrders(addr)
	if err != nil || oc.inFlight != 3 || oc.succeeded != 7 || oc.failed != 2 || oc.failedBy["channel_unavailable"] != 2 {
		t.Fatalf("orders %+v %v", oc, err)
	}
	if p := scrapeProcess(addr); !p.ok || p.cpuSeconds != 12.5 {
		t.Fatalf("process %+v", p)
	}
	body = "process_cpu_seconds_total 1\n"
	if _, err := scrapedLast(addr)(); err == nil {
		t.Fatal("a ledgerd without the stream's head read as one")
	}
}
