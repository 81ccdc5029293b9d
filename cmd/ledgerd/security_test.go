package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/internal/testcerts"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

func fakeLookup(m map[string][]string) func(context.Context, string) ([]net.IPAddr, error) {
	return func(_ context.Context, host string) ([]net.IPAddr, error) {
		ips, ok := m[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []net.IPAddr
		for _, ip := range ips {
			out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
		}
		return out, nil
	}
}

func TestIsLoopback(t *testing.T) {
	lookup := fakeLookup(map[string][]string{"lo.internal": {"127.0.0.2", "::1"}, "mixed.internal": {"127.0.0.1", "10.0.0.1"},
		"empty.internal": {}})
	for addr, want := range map[string]bool{
		"127.0.0.1:7070": true, "127.1.2.3:0": true, "[::1]:7070": true, "localhost:7070": true, "LOCALHOST:1": true,
		"lo.internal:1": true, ":7070": false, "0.0.0.0:7070": false, "[::]:7070": false, "10.1.2.3:7070": false,
		"mixed.internal:1": false, "empty.internal:1": false,
	} {
		got, err := isLoopback(addr, lookup)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", addr, got, err, want)
		}
	}
	for _, addr := range []string{"nohost.internal:1", "no-port"} {
		if _, err := isLoopback(addr, lookup); err == nil {
			t.Errorf("%s: no error", addr)
		}
	}
}

// TestCheckExposure: each listener off loopback needs what it needs, or --insecure.
func TestCheckExposure(t *testing.T) {
	lookup := fakeLookup(nil)
	for _, tc := range []struct {
		args []string
		want string // "": accepted
	}{
		{nil, ""}, // the quick start
		{[]string{"--listen", "0.0.0.0:7070"}, "--listen 0.0.0.0:7070 is not a loopback address: it needs TLS (--tls-cert, --tls-key) and authentication (--auth-tokens)"},
		{[]string{"--listen", ":7070", "--tls-cert", "c", "--tls-key", "k"}, "--listen :7070 is not a loopback address: it needs authentication (--auth-tokens)"},
		{[]string{"--listen", "10.0.0.1:7070", "--auth-tokens", "f"}, "needs TLS (--tls-cert, --tls-key), or --insecure"},
		{[]string{"--listen", "10.0.0.1:7070", "--auth-tokens", "f", "--tls-cert", "c", "--tls-key", "k"}, ""},
		{[]string{"--notify-listen", "0.0.0.0:7072"}, "--notify-listen 0.0.0.0:7072 is not a loopback address: it needs TLS"},
		{[]string{"--notify-listen", "0.0.0.0:7072", "--tls-cert", "c", "--tls-key", "k"}, ""},
		{[]string{"--metrics-listen", "0.0.0.0:9464"}, ""}, // read-only
		{[]string{"--metrics-listen", "0.0.0.0:9464", "--pprof"}, "--metrics-listen 0.0.0.0:9464 is not a loopback address: it needs no --pprof"},
		{[]string{"--metrics-listen", "127.0.0.1:9464", "--pprof"}, ""},
		{[]string{"--listen", "0.0.0.0:7070", "--notify-listen", ":7072", "--metrics-listen", ":9464", "--pprof", "--insecure"}, ""},
		{[]string{"--listen", "nohost.internal:7070"}, "no such host"},
	} {
		c, err := parseFlags(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		err = checkExposure(c, lookup)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestSecurityFlags(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "c"}, {"--tls-key", "k"}, {"--tls-client-ca", "ca", "--auth-tokens", "f"},
		{"--tls-client-ca", "ca", "--tls-cert", "c", "--tls-key", "k"},
		{"--tls-cert", "c", "--tls-key", "k", "--fake-channel", "demo"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	dir := t.TempDir()
	if _, err := loadSecurity(securityFlags{tlsCert: filepath.Join(dir, "none.crt"), tlsKey: filepath.Join(dir, "none.key")}); err == nil {
		t.Error("missing certificate files accepted")
	}
	bad := filepath.Join(dir, "tokens")
	if err := os.WriteFile(bad, []byte("# callers\nwriter svc sha256:abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSecurity(securityFlags{authTokens: bad}); err == nil || !strings.Contains(err.Error(), bad+":2: sha256") {
		t.Errorf("a bad tokens file: %v", err)
	}
	// Certificate identities without client certificates could never match: refused.
	certs := filepath.Join(dir, "certs")
	if err := os.WriteFile(certs, []byte("operator ops cert:ops-box\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSecurity(securityFlags{authTokens: certs}); err == nil || !strings.Contains(err.Error(), "need --tls-client-ca") {
		t.Errorf("cert: lines without --tls-client-ca: %v", err)
	}
}

// TestNotifyMTLS: under mTLS, a callback's certificate must map to role channel with the
// path's channel name.
func TestNotifyMTLS(t *testing.T) {
	creds, err := api.ParseCredentials("tokens", []byte("channel acme cert:acme-callbacks\nreader dash cert:dashboard\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := api.NewMetrics()
	sec := &security{creds: creds, mtls: true}
	sec.count(m)
	reached := 0
	h := sec.notifyHandler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
	post := func(channel, cn string) int {
		r := httptest.NewRequest(http.MethodPost, payments.NotifyPath+channel, strings.NewReader("{}"))
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		channel, cn string
		want        int
	}{
		{"acme", "acme-callbacks", http.StatusOK},
		{"other", "acme-callbacks", http.StatusForbidden},
		{"acme", "dashboard", http.StatusForbidden},
		{"acme", "stranger", http.StatusUnauthorized},
	} {
		if got := post(tc.channel, tc.cn); got != tc.want {
			t.Errorf("%s as %s: %d, want %d", tc.channel, tc.cn, got, tc.want)
		}
	}
	if reached != 1 {
		t.Errorf("the handler ran %d times, want 1", reached)
	}
	if !sec.mtls || sec.auth == nil || testutil.ToFloat64(sec.auth.Denials().WithLabelValues(api.NotifyMethod, "role")) != 2 ||
		testutil.ToFloat64(sec.auth.Denials().WithLabelValues(api.NotifyMethod, "unknown_cert")) != 1 {
		t.Error("notify denials not counted")
	}
}

// TestRefusesNonLoopback runs ledgerd: off loopback without TLS and authentication it exits
// 2 before binding anything or creating a store; with --insecure it serves and logs an error.
func TestRefusesNonLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	bin := build(t, dir, "./cmd/ledgerd")
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "--data-dir", data, "--listen", "0.0.0.0:0", "--notify-listen", "127.0.0.1:0", "--metrics-listen", "")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "not a loopback address") {
		t.Fatalf("ledgerd --listen 0.0.0.0:0: %v\n%s", err, out)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start made the store: %v", err)
	}

	cmd = exec.Command(bin, "--data-dir", data, "--listen", "0.0.0.0:0", "--notify-listen", "127.0.0.1:0", "--metrics-listen", "",
		"--insecure")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var log strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "ledgerd serving") && time.Now().Before(deadline) {
		n, err := stderr.Read(buf)
		log.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(log.String(), "ledgerd serving") {
		t.Fatalf("ledgerd --insecure did not serve:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "level=ERROR msg=\"INSECURE: serving a non-loopback address without protection (--insecure)\" flag=--listen") {
		t.Errorf("no loud error for --insecure:\n%s", log.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
}

// TestTLSAuthEndToEnd runs ledgerd with TLS, mTLS and a tokens file: a writer's token makes
// accounts and a transfer, a reader's is refused CreateTransfers but looks up, an
// operator's certificate alone verifies, no credential is UNAUTHENTICATED, no client
// certificate does not get through the handshake, health answers without a token, ledgerctl
// reaches it with --token-file and the TLS flags, and the denials are counted.
func TestTLSAuthEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	bin := build(t, dir, "./cmd/ledgerd")
	ctl := build(t, dir, "./cmd/ledgerctl")
	ca := testcerts.NewCA(t, "ledger test CA")
	caFile := ca.Write(t, dir, "ca")
	serverCert, serverKey := ca.Server(t).Write(t, dir, "server")
	svcCert, svcKey := ca.Client(t, "svc-box").Write(t, dir, "svc")      // not in the tokens file: its token decides
	opsCert, opsKey := ca.Client(t, "x", "ops-box").Write(t, dir, "ops") // mapped to operator by its DNS SAN
	writerToken, writerLine, err := api.NewToken(api.RoleWriter, "payments-svc")
	if err != nil {
		t.Fatal(err)
	}
	readerToken, readerLine, err := api.NewToken(api.RoleReader, "dashboard")
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# callers\n"+writerLine+"\n"+readerLine+"\noperator ops cert:ops-box\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readerFile := filepath.Join(dir, "reader.token")
	if err := os.WriteFile(readerFile, []byte(readerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freePort(t)
	srv := start(t, bin, filepath.Join(dir, "data"), "--shards", "2", "--metrics-listen", metricsAddr,
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", caFile, "--auth-tokens", tokens)
	defer func() { _ = srv.cmd.Process.Kill(); <-srv.exited }()

	connTo := func(addr string, sec client.Security) *grpc.ClientConn {
		t.Helper()
		sec.CAFile, sec.ServerName = caFile, "localhost"
		opts, err := sec.DialOptions()
		if err != nil {
			t.Fatal(err)
		}
		c, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	conn := func(sec client.Security) *grpc.ClientConn { t.Helper(); return connTo(srv.addr, sec) }
	writer := ledgerv1.NewLedgerServiceClient(conn(client.Security{Token: writerToken, CertFile: svcCert, KeyFile: svcKey}))
	reader := ledgerv1.NewLedgerServiceClient(conn(client.Security{TokenFile: readerFile, CertFile: svcCert, KeyFile: svcKey}))
	nobody := conn(client.Security{CertFile: svcCert, KeyFile: svcKey})
	opsConn := conn(client.Security{CertFile: opsCert, KeyFile: opsKey})
	noCert := ledgerv1.NewLedgerServiceClient(conn(client.Security{Token: writerToken}))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if resp, err := writer.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 1, Ledger: 1, Code: 10}, {Id: 2, Ledger: 1, Code: 10}}}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("writer creates accounts: %v %v", resp, err)
	}
	move := &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{{Id: 1, DebitAccountId: 1, CreditAccountId: 2, Amount: 5, Ledger: 1, Code: 1}}}
	if _, err := reader.CreateTransfers(ctx, move); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader CreateTransfers: %v, want PERMISSION_DENIED", err)
	}
	if _, err := ledgerv1.NewLedgerServiceClient(nobody).CreateTransfers(ctx, move); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token, a certificate the tokens file does not name: %v, want UNAUTHENTICATED", err)
	}
	if _, err := ledgerv1.NewLedgerServiceClient(opsConn).CreateTransfers(ctx, move); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator CreateTransfers: %v, want PERMISSION_DENIED", err)
	}
	if _, err := noCert.CreateTransfers(ctx, move); status.Code(err) != codes.Unavailable {
		t.Errorf("no client certificate: %v, want UNAVAILABLE (the handshake fails)", err)
	}
	if resp, err := writer.CreateTransfers(ctx, move); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("writer CreateTransfers: %v %v", resp, err)
	}
	got, err := reader.LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: []uint64{2}})
	if err != nil || len(got.GetAccounts()) != 1 || got.GetAccounts()[0].GetCreditsPosted().GetLo() != 5 {
		t.Fatalf("reader looks up the credit: %v %v", got, err)
	}
	// The admin service (its own listener) takes the same credentials: the operator's.
	opsAdmin := ledgerv1.NewAdminServiceClient(connTo(srv.admin, client.Security{CertFile: opsCert, KeyFile: opsKey}))
	if v, err := opsAdmin.Verify(ctx, &ledgerv1.VerifyRequest{}); err != nil || len(v.GetProblems()) > 0 {
		t.Errorf("operator by certificate verifies: %v %v", v, err)
	}
	if h, err := healthpb.NewHealthClient(nobody).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil ||
		h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v %v", h, err)
	}

	// ledgerctl, with the token in a file and the TLS flags; and without a token.
	out, err := exec.Command(ctl, "accounts", "--addr", srv.addr, "--token-file", readerFile, "--tls-ca", caFile,
		"--tls-server-name", "localhost", "--tls-cert", svcCert, "--tls-key", svcKey, "2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"creditsPosted":"5"`) {
		t.Errorf("ledgerctl accounts with a reader token: %v\n%s", err, out)
	}
	cmd := exec.Command(ctl, "verify", "--addr", srv.admin)
	cmd.Env = append(os.Environ(), client.EnvToken+"="+readerToken, client.EnvCA+"="+caFile, client.EnvCert+"="+svcCert,
		client.EnvKey+"="+svcKey)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "PermissionDenied") {
		t.Errorf("ledgerctl verify as a reader (token from the environment): %v\n%s", err, out)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ledger_auth_denials_total{method="/ledger.v1.LedgerService/CreateTransfers",reason="role"} 2`,
		`ledger_auth_denials_total{method="/ledger.v1.LedgerService/CreateTransfers",reason="unknown_cert"} 1`,
		`ledger_auth_denials_total{method="/ledger.v1.AdminService/Verify",reason="role"} 1`,
	} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("the scrape has no %s", want)
		}
	}
}
