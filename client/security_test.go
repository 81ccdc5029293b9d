package client

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/internal/testcerts"
)

func TestSecurityFromEnvAndFlags(t *testing.T) {
	t.Setenv(EnvToken, "lt_env")
	t.Setenv(EnvTokenFile, "/env/token")
	t.Setenv(EnvTLS, "true")
	t.Setenv(EnvCA, "/env/ca.crt")
	t.Setenv(EnvServerName, "ledger.example")
	t.Setenv(EnvCert, "")
	t.Setenv(EnvKey, "")
	var s Security
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.RegisterFlags(fs)
	if err := fs.Parse([]string{"--token-file", "/flag/token", "--tls-ca", "/flag/ca.crt"}); err != nil {
		t.Fatal(err)
	}
	want := Security{Token: "lt_env", TokenFile: "/flag/token", TLS: true, CAFile: "/flag/ca.crt", ServerName: "ledger.example"}
	if s != want {
		t.Errorf("%+v, want %+v", s, want)
	}
	if fs.Lookup("token") != nil {
		t.Error("a flag takes the token itself: it would show in ps")
	}
}

func TestSecurityDialOptions(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "ca")
	caFile := ca.Write(t, dir, "ca")
	cert, key := ca.Client(t, "svc").Write(t, dir, "svc")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  lt_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    Security
		want string // error; "": none
		opts int
	}{
		{Security{}, "", 1},
		{Security{Token: "lt_x"}, "", 2},
		{Security{Token: "lt_x", TokenFile: tokenFile, CAFile: caFile, CertFile: cert, KeyFile: key}, "", 2},
		{Security{TLS: true}, "", 1},
		{Security{TokenFile: filepath.Join(dir, "none")}, "token file", 0},
		{Security{TokenFile: empty}, "is empty", 0},
		{Security{CAFile: tokenFile}, "no PEM certificate", 0},
		{Security{CertFile: cert}, "both its certificate and its key", 0},
		{Security{CertFile: cert, KeyFile: caFile}, "client certificate", 0},
	} {
		opts, err := tc.s.DialOptions()
		if tc.want == "" && (err != nil || len(opts) != tc.opts) || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %d options, %v; want %q", tc.s, len(opts), err, tc.want)
		}
	}
	md, err := bearer("lt_file").GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer lt_file" {
		t.Errorf("metadata %v %v", md, err)
	}
}
