package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// The dashboard and the alert rules in deploy/ are checked here against the code: every
// metric they name must be one ledgerd serves, with the type their functions need; the rules
// and the scrape go through promtool (.ci/run installs it); the dashboard must be one Grafana
// loads.

const (
	dashboardFile = "../../deploy/grafana/ledger.json"
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	alertsTests   = "../../deploy/prometheus/alerts_test.yml"
	operationsDoc = "../../docs/OPERATIONS.md"
)

// plannedMetrics are named by the dashboard and the rules before ledgerd serves them, and
// why. Each must be absent from the scrape: once the code serves it, remove it from here so
// that its type is checked like every other.
var plannedMetrics = map[string]string{}

// promtoolLintAccepted are the findings of `promtool check metrics` this scrape is allowed to
// have. promlint reads "days" in a name as a unit of time; these two gauges count days.
var promtoolLintAccepted = map[string]bool{
	`ledger_eod_days_open use base unit "seconds" instead of "days"`: true,
	`ledger_eod_due_days use base unit "seconds" instead of "days"`:  true,
}

type grafanaTarget struct {
	Datasource *struct{ Type, UID string } `json:"datasource"`
	Expr       string                      `json:"expr"`
	RefID      string                      `json:"refId"`
}

type grafanaPanel struct {
	ID         int                         `json:"id"`
	Type       string                      `json:"type"`
	Title      string                      `json:"title"`
	Datasource *struct{ Type, UID string } `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }   `json:"gridPos"`
	Targets    []grafanaTarget             `json:"targets"`
}

type grafanaDashboard struct {
	Title      string         `json:"title"`
	UID        string         `json:"uid"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct{ Name, Type string } `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readAlerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", alertsFile)
	}
	return rules
}

// grafanaVars replaces the dashboard's variables with what Grafana would put there.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")

// deployExprs are the PromQL expressions of the dashboard's targets and of the alert rules,
// each with where it comes from.
func deployExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("dashboard panel %d %q target %s", p.ID, p.Title, tg.RefID)] = grafanaVars.Replace(tg.Expr)
		}
	}
	for i, r := range readAlerts(t) {
		out[fmt.Sprintf("alert %s (rule %d)", r.Alert, i)] = r.Expr
	}
	return out
}

// TestDashboardLoads: the dashboard is JSON Grafana loads, with the data source as a variable,
// and every panel but the rows queries it.
func TestDashboardLoads(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q: want both", d.Title, d.UID)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("templating variables %v: want datasource (a data source) and instance (a query)", vars)
	}
	ids := map[int]bool{}
	queried := 0
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or taken", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d: a title and a place on the 24-column grid, got %q %+v", p.ID, p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		queried++
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: datasource %+v, want prometheus ${datasource}", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q: no target", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %d %q: target %+v: want an expression and a refId of its own", p.ID, p.Title, tg)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d %q target %s: datasource %+v, want ${datasource}", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
			if strings.Contains(tg.Expr, "rate(") && !strings.Contains(tg.Expr, "[$__rate_interval]") {
				t.Errorf("panel %d %q target %s: rate over a fixed range; use [$__rate_interval]", p.ID, p.Title, tg.RefID)
			}
		}
	}
	if queried < 20 {
		t.Errorf("only %d panels query Prometheus", queried)
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestAlertRulesDocumented: every alert waits (for), says how bad it is, tells the operator
// what happened and what to do, and has its runbook section in docs/OPERATIONS.md; the
// README lists it.
func TestAlertRulesDocumented(t *testing.T) {
	ops, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(ops), "\n") {
		if strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range readAlerts(t) {
		if r.Alert == "" {
			t.Errorf("rule %q: only alerting rules belong in %s", r.Record, alertsFile)
			continue
		}
		if r.For == "" {
			t.Errorf("%s: no for: duration", r.Alert)
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		if len(r.Annotations["summary"]) < 20 || len(r.Annotations["description"]) < 60 {
			t.Errorf("%s: summary and description must say what happened and what to do", r.Alert)
		}
		want := "docs/OPERATIONS.md#" + strings.ToLower(r.Alert)
		if r.Annotations["runbook"] != want {
			t.Errorf("%s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
		}
		if !anchors[strings.ToLower(r.Alert)] {
			t.Errorf("%s: no section %q in %s", r.Alert, r.Alert, operationsDoc)
		}
		if !strings.Contains(string(readme), "`"+r.Alert+"`") {
			t.Errorf("%s: not in the README", r.Alert)
		}
	}
}

// promtool runs promtool with args and stdin, or skips the test when it is not installed.
func promtool(t *testing.T, stdin []byte, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (.ci/run installs it: apt-get install prometheus)")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("promtool %v: %v", args, err)
	}
	return string(out), 0
}

// TestPromtoolRules: the rules pass promtool check rules and their unit tests, and every
// dashboard expression parses as PromQL (promtool checks them as recording rules).
func TestPromtoolRules(t *testing.T) {
	if out, code := promtool(t, nil, "check", "rules", "--lint=all", "--lint-fatal", alertsFile); code != 0 {
		t.Errorf("promtool check rules %s: exit %d\n%s", alertsFile, code, out)
	}
	if out, code := promtool(t, nil, "test", "rules", alertsTests); code != 0 {
		t.Errorf("promtool test rules %s: exit %d\n%s", alertsTests, code, out)
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	exprs := deployExprs(t)
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		if strings.HasPrefix(k, "dashboard") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for i, k := range keys {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:target_%d", i), Expr: exprs[k]})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := promtool(t, nil, "check", "rules", file); code != 0 {
		for i, k := range keys {
			out = strings.ReplaceAll(out, fmt.Sprintf("dashboard:target_%d\"", i), k+"\"")
		}
		t.Errorf("the dashboard's expressions, as recording rules: exit %d\n%s", code, out)
	}
}

var (
	typeLine   = regexp.MustCompile(`(?m)^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ([a-z]+)$`)
	metricName = regexp.MustCompile(`\b((?:ledger|process|go)_[a-z0-9_]+)\b`)
	rated      = regexp.MustCompile(`\b(rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// scrapeTypes maps each metric family of a text-format scrape to its type.
func scrapeTypes(body string) map[string]string {
	out := map[string]string{}
	for _, m := range typeLine.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// family is the metric family a series name belongs to (a histogram's _bucket, _sum and
// _count are its family's), and whether it is such a histogram series.
func family(name string, types map[string]string) (string, bool) {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (types[base] == "histogram" || types[base] == "summary") {
			return base, true
		}
	}
	return name, false
}

// TestScrapeAgainstDeploy starts ledgerd (with a channel and the reconciliation, so that
// their metrics are served), makes a split transfer, scrapes /metrics, has promtool check the
// scrape, and checks that every metric the dashboard and the alert rules name is served, with
// rate() and increase() only over counters and histogram series, and histogram_quantile()
// only over buckets.
func TestScrapeAgainstDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	bin := build(t, dir, "./cmd/ledgerd")
	metricsAddr := freePort(t)
	srv := start(t, bin, filepath.Join(dir, "data"), "--shards", "2", "--metrics-listen", metricsAddr,
		"--fake-channel", "demo", "--recon-follow", "--backup-root", filepath.Join(dir, "backups"))
	defer func() { _ = srv.cmd.Process.Kill(); <-srv.exited }()

	// Two accounts on different shards and a transfer between them: a gRPC request, a split
	// transfer, and so the request histogram and the transit gauge.
	a, b := uint64(1), uint64(2)
	for ledger.ShardOf(b, 2) == ledger.ShardOf(a, 2) {
		b++
	}
	client, _, closeConn := dial(t, srv)
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if resp, err := client.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: a, Ledger: 1, Code: 10}, {Id: b, Ledger: 1, Code: 10}}}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create accounts: %v %v", resp, err)
	}
	if resp, err := client.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{
		{Id: 1, DebitAccountId: a, CreditAccountId: b, Amount: 5, Ledger: 1, Code: 1}}}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create transfers: %v %v", resp, err)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics") // the text format, as promtool reads it
	if err != nil {
		t.Fatal(err)
	}
	scrape, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v %v", resp.Status, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scrape.txt"), scrape, 0o600); err != nil {
		t.Fatal(err)
	}
	types := scrapeTypes(string(scrape))
	if len(types) < 50 {
		t.Fatalf("the scrape has only %d metric families", len(types))
	}
	for name, why := range plannedMetrics {
		if _, ok := types[name]; ok {
			t.Errorf("%s is served now: remove it from plannedMetrics (%s)", name, why)
		}
	}

	exprs := deployExprs(t)
	named := map[string]bool{}
	for where, expr := range exprs {
		for _, m := range metricName.FindAllString(expr, -1) {
			base, _ := family(m, types)
			named[base] = true
			if _, ok := types[base]; !ok && plannedMetrics[base] == "" {
				t.Errorf("%s names %s, which ledgerd does not serve", where, m)
			}
		}
		for _, m := range rated.FindAllStringSubmatch(expr, -1) {
			base, series := family(m[2], types)
			if typ, ok := types[base]; ok && typ != "counter" && !series {
				t.Errorf("%s: %s() over %s, a %s", where, m[1], m[2], typ)
			}
		}
		if strings.Contains(expr, "histogram_quantile(") && !strings.Contains(expr, "_bucket") {
			t.Errorf("%s: histogram_quantile without _bucket series", where)
		}
		if strings.Contains(expr, "_bucket") && !strings.Contains(expr, "by (le") {
			t.Errorf("%s: buckets summed without keeping le", where)
		}
	}
	// What the issue asks the dashboard and alerts to cover, by a metric of each.
	for _, m := range []string{"ledger_transfers_total", "ledger_grpc_request_duration_seconds", "ledger_commit_postings",
		"ledger_shard_requests_in_flight", "ledger_outbox_oldest_age_seconds", "ledger_transit_balance",
		"ledger_hot_buffered_legs", "ledger_storage_write_stall_seconds_total", "ledger_storage_disk_free_bytes",
		"ledger_auth_denials_total", "process_start_time_seconds"} {
		if !named[m] {
			t.Errorf("neither the dashboard nor the alerts use %s", m)
		}
	}

	out, code := promtool(t, scrape, "check", "metrics")
	switch code {
	case 0:
	case 3: // lint findings
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !promtoolLintAccepted[strings.TrimSpace(line)] {
				t.Errorf("promtool check metrics: %s", line)
			}
		}
	default:
		t.Errorf("promtool check metrics: exit %d\n%s", code, out)
	}
}
