package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// The environment variables Security reads (SecurityFromEnv); a flag given overrides its
// variable.
const (
	EnvToken      = "LEDGER_TOKEN"      // the bearer token itself
	EnvTokenFile  = "LEDGER_TOKEN_FILE" // a file holding it
	EnvTLS        = "LEDGER_TLS"        // "1" or "true": TLS with the system's roots
	EnvCA         = "LEDGER_TLS_CA"
	EnvServerName = "LEDGER_TLS_SERVER_NAME"
	EnvCert       = "LEDGER_TLS_CERT"
	EnvKey        = "LEDGER_TLS_KEY"
)

// Security is how a client reaches a ledgerd that serves TLS and authenticates callers. The
// zero value dials plaintext without a token (the loopback quick start).
type Security struct {
	// Token is the bearer token sent with every call ("authorization: Bearer TOKEN"); never
	// take it from a flag, which other users see in ps. TokenFile, when set, is read instead.
	Token     string
	TokenFile string
	// TLS dials with TLS; implied by CAFile, CertFile or ServerName.
	TLS bool
	// CAFile holds the CA certificates (PEM) the server's must chain to (empty: the system's).
	CAFile string
	// ServerName is the name checked in the server's certificate (empty: the address's host).
	ServerName string
	// CertFile and KeyFile are the client certificate and key (PEM) for mTLS.
	CertFile, KeyFile string
}

// SecurityFromEnv reads Security from the LEDGER_* environment variables.
func SecurityFromEnv() Security {
	tlsOn := strings.ToLower(os.Getenv(EnvTLS))
	return Security{Token: os.Getenv(EnvToken), TokenFile: os.Getenv(EnvTokenFile), TLS: tlsOn == "1" || tlsOn == "true",
		CAFile: os.Getenv(EnvCA), ServerName: os.Getenv(EnvServerName), CertFile: os.Getenv(EnvCert), KeyFile: os.Getenv(EnvKey)}
}

// RegisterFlags adds --token-file, --tls, --tls-ca, --tls-server-name, --tls-cert and
// --tls-key to fs, their defaults from the environment (SecurityFromEnv; the token itself
// only from LEDGER_TOKEN).
func (s *Security) RegisterFlags(fs *flag.FlagSet) {
	*s = SecurityFromEnv()
	fs.StringVar(&s.TokenFile, "token-file", s.TokenFile, "`FILE` holding the bearer token to send (default $"+EnvTokenFile+"; or the token itself in $"+EnvToken+")")
	fs.BoolVar(&s.TLS, "tls", s.TLS, "dial with TLS, the server's certificate checked against the system's roots (default $"+EnvTLS+"; implied by --tls-ca, --tls-cert, --tls-server-name)")
	fs.StringVar(&s.CAFile, "tls-ca", s.CAFile, "`FILE`: CA certificates (PEM) the server's certificate must chain to (default $"+EnvCA+")")
	fs.StringVar(&s.ServerName, "tls-server-name", s.ServerName, "the `NAME` the server's certificate must carry (default $"+EnvServerName+", else the address's host)")
	fs.StringVar(&s.CertFile, "tls-cert", s.CertFile, "`FILE`: a client certificate (PEM) for mTLS (default $"+EnvCert+")")
	fs.StringVar(&s.KeyFile, "tls-key", s.KeyFile, "`FILE`: the key of --tls-cert (default $"+EnvKey+")")
}

// tokenBytesMax bounds a token file.
const tokenBytesMax = 4096

// DialOptions are the transport credentials and the per-call token Security asks for.
func (s Security) DialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if s.TLS || s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.ServerName != "" {
		conf, err := s.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	token := s.Token
	if s.TokenFile != "" {
		b, err := os.ReadFile(s.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		if len(b) > tokenBytesMax {
			return nil, fmt.Errorf("token file %s: larger than %d bytes", s.TokenFile, tokenBytesMax)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", s.TokenFile)
		}
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
}

func (s Security) tlsConfig() (*tls.Config, error) {
	conf := &tls.Config{ServerName: s.ServerName, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", s.CAFile)
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// bearer sends a token with every call. It is sent over plaintext too: ledgerd takes tokens
// without TLS only on loopback (or with --insecure).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
