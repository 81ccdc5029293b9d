package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
)

// securityFlags configure TLS and authentication (README, Security).
type securityFlags struct {
	tlsCert, tlsKey, tlsClientCA string
	authTokens                   string
	insecure                     bool
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tlsCert, "tls-cert", "", "`FILE`: the server's certificate chain (PEM); serves gRPC and the notify endpoint over TLS (with --tls-key)")
	fs.StringVar(&s.tlsKey, "tls-key", "", "`FILE`: the private key of --tls-cert (PEM)")
	fs.StringVar(&s.tlsClientCA, "tls-client-ca", "", "`FILE`: CA certificates (PEM) client certificates must chain to: mTLS, every connection shows one (needs --tls-cert and --auth-tokens, which maps certificates to roles)")
	fs.StringVar(&s.authTokens, "auth-tokens", "", "`FILE` of callers: 'ROLE NAME sha256:HEX' (a bearer token's hash; ledgerctl token makes one) or 'ROLE NAME cert:IDENTITY' (an mTLS certificate's CN or SAN); with it every gRPC call but health is authenticated and authorised by role")
	fs.BoolVar(&s.insecure, "insecure", false, "serve gRPC on a non-loopback address without TLS and --auth-tokens, the notify endpoint without TLS, and pprof off loopback (logged as an error at start)")
}

func (s *securityFlags) check() error {
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if s.tlsClientCA != "" && (s.tlsCert == "" || s.authTokens == "") {
		return errors.New("--tls-client-ca needs --tls-cert (mTLS is TLS) and --auth-tokens (which maps client certificates to roles)")
	}
	return nil
}

// checkWith refuses what the security flags cannot serve with the other flags.
func (s *securityFlags) checkWith(p *paymentFlags) error {
	if s.tlsCert != "" && len(p.fakeChannels) > 0 {
		// A simulated channel posts its callbacks in plain HTTP and shows no certificate.
		return errors.New("--fake-channel is a demo on loopback: it cannot post its callbacks to a TLS notify endpoint; drop --tls-cert or the simulated channels")
	}
	return nil
}

// security is what the flags loaded: read before the store opens, so that a bad file fails
// the start before it creates anything.
type security struct {
	tls   *tls.Config      // nil: plaintext
	creds *api.Credentials // nil: no authentication
	auth  *api.Authenticator
	mtls  bool
}

func loadSecurity(s securityFlags) (*security, error) {
	sec := &security{}
	if s.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		sec.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.tlsClientCA != "" {
		pem, err := os.ReadFile(s.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", s.tlsClientCA)
		}
		sec.tls.ClientCAs, sec.tls.ClientAuth, sec.mtls = pool, tls.RequireAndVerifyClientCert, true
	}
	if s.authTokens != "" {
		creds, err := api.LoadCredentials(s.authTokens)
		if err != nil {
			return nil, fmt.Errorf("--auth-tokens: %w", err)
		}
		if n := creds.Certificates(); n > 0 && !sec.mtls {
			// Without client certificates those lines can never match: a caller the operator
			// meant to let in would be refused with no hint why.
			return nil, fmt.Errorf("--auth-tokens %s maps %d certificate identities (cert:), which need --tls-client-ca", s.authTokens, n)
		}
		sec.creds = creds
	}
	return sec, nil
}

// count makes the authenticator, counting denials in m: before any listener serves.
func (sec *security) count(m *api.Metrics) {
	if sec.creds != nil {
		sec.auth = api.NewAuthenticator(sec.creds, m)
	}
}

// grpcOptions are the gRPC server's TLS credentials and authentication interceptors.
func (sec *security) grpcOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if sec.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(sec.tls)))
	}
	if sec.auth != nil {
		opts = append(opts, sec.auth.ServerOptions()...)
	}
	return opts
}

// notifyHandler wraps the notify endpoint. Each callback is authenticated by its HMAC
// signature (the channel's secret) whatever the flags; with mTLS the connection's client
// certificate must also map to role channel with the NAME of the path
// (POST /v1/notify/NAME), else 401 (an identity the tokens file does not name) or 403 (not
// that channel), counted in ledger_auth_denials_total{method="notify"}.
func (sec *security) notifyHandler(next http.Handler) http.Handler {
	if !sec.mtls {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, payments.NotifyPath)
		var cert *x509.Certificate
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			cert = r.TLS.VerifiedChains[0][0]
		}
		p, ok := api.Principal{}, false
		if cert != nil {
			p, ok = sec.creds.Certificate(cert)
		}
		switch {
		case !ok:
			sec.denyNotify("unknown_cert")
			http.Error(w, "the client certificate names no identity of the tokens file", http.StatusUnauthorized)
		case p.Role != api.RoleChannel || p.Name != name:
			sec.denyNotify("role")
			http.Error(w, fmt.Sprintf("%s (%s) may not post callbacks of channel %q", p.Name, p.Role, name), http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (sec *security) denyNotify(reason string) {
	if sec.auth != nil && sec.auth.Denials() != nil {
		sec.auth.Denials().WithLabelValues(api.NotifyMethod, reason).Inc()
	}
}

// exposure is a listener's address and what it needs off loopback.
type exposure struct {
	flag, addr string
	problem    string // what is missing off loopback; "": nothing
}

// exposures lists what each listener would serve off loopback without protection:
//   - gRPC (--listen) moves money: TLS and --auth-tokens;
//   - the notify endpoint takes signed callbacks: TLS (the signature authenticates, TLS keeps
//     payment details off the wire);
//   - metrics (--metrics-listen) is read-only counts and gauges, no account or payment data:
//     it may listen anywhere, but --pprof (profiles on demand, a denial of service) may not.
func exposures(c config) []exposure {
	var out []exposure
	var grpcMissing []string
	if c.security.tlsCert == "" {
		grpcMissing = append(grpcMissing, "TLS (--tls-cert, --tls-key)")
	}
	if c.security.authTokens == "" {
		grpcMissing = append(grpcMissing, "authentication (--auth-tokens)")
	}
	out = append(out, exposure{"--listen", c.listen, strings.Join(grpcMissing, " and ")})
	if c.security.tlsCert == "" {
		out = append(out, exposure{"--notify-listen", c.payments.notifyListen, "TLS (--tls-cert, --tls-key)"})
	}
	if c.pprof && c.metricsListen != "" {
		out = append(out, exposure{"--metrics-listen", c.metricsListen, "no --pprof (profiles on demand)"})
	}
	return out
}

// checkExposure refuses to serve a listener off loopback without what it needs, unless
// --insecure, which is logged as an error for each such listener.
func checkExposure(c config, lookup func(ctx context.Context, host string) ([]net.IPAddr, error)) error {
	for _, e := range exposures(c) {
		if e.problem == "" {
			continue
		}
		loopback, err := isLoopback(e.addr, lookup)
		if err != nil {
			return fmt.Errorf("%s %s: %w", e.flag, e.addr, err)
		}
		if loopback {
			continue
		}
		if !c.security.insecure {
			return fmt.Errorf("%s %s is not a loopback address: it needs %s, or --insecure to serve it unprotected", e.flag, e.addr, e.problem)
		}
		slog.Error("INSECURE: serving a non-loopback address without protection (--insecure)", "flag", e.flag, "addr", e.addr,
			"missing", e.problem)
	}
	if c.security.insecure {
		slog.Warn("--insecure: listeners off loopback may serve without TLS or authentication")
	}
	return nil
}

// lookupTimeout bounds resolving a listen address's host name.
const lookupTimeout = 5 * time.Second

// isLoopback reports whether every address host:port would listen on is a loopback one. An
// empty host or an unspecified address (0.0.0.0, ::) listens on every interface; a name
// is resolved, and is loopback only if all its addresses are.
func isLoopback(addr string, lookup func(ctx context.Context, host string) ([]net.IPAddr, error)) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "" {
		return false, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback(), nil
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	ips, err := lookup(ctx, host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}
