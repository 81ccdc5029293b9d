package api

// Authentication and authorisation of gRPC callers (ledgerd --auth-tokens).
//
// A caller is a principal: a role and a name, from a bearer token (the "authorization:
// Bearer TOKEN" metadata, checked against the SHA-256 hashes in the tokens file) or from the
// verified client certificate of an mTLS connection (its subject CN, a DNS, URI or e-mail
// SAN, mapped to a role in the same file). A bearer token, when sent, decides: a bad one is
// refused even on a connection with a good certificate.
//
// Every method is in methodRoles, the one table of who may call what; a method missing from
// it is refused to everyone (deny by default), and a test enumerates every registered method
// against every role. The checks run in this order, each refusal counted in
// ledger_auth_denials_total{method,reason}:
//  1. an open method (health) passes with or without credentials;
//  2. no credential: UNAUTHENTICATED (missing); an authorization metadata that is not
//     "Bearer TOKEN": UNAUTHENTICATED (malformed); a token matching no hash: UNAUTHENTICATED
//     (bad_token); a verified certificate naming no identity of the file: UNAUTHENTICATED
//     (unknown_cert);
//  3. a method not in the table: PERMISSION_DENIED (unlisted); a role the method does not
//     allow: PERMISSION_DENIED (role).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// Role is what a principal may do.
type Role uint8

// The roles. A writer and an operator may also read; a channel may call no gRPC method (it
// only posts callbacks to the notify endpoint).
const (
	RoleReader Role = iota + 1
	RoleWriter
	RoleOperator
	RoleChannel
)

// Roles lists every role, for tests and documentation.
var Roles = []Role{RoleReader, RoleWriter, RoleOperator, RoleChannel}

func (r Role) String() string {
	switch r {
	case RoleReader:
		return "reader"
	case RoleWriter:
		return "writer"
	case RoleOperator:
		return "operator"
	case RoleChannel:
		return "channel"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want reader, writer, operator or channel)", s)
}

// access is who may call a method: a set of roles, or open to everyone.
type access uint8

const (
	accessOpen access = 1 << iota // no credential needed
	accessReader
	accessWriter
	accessOperator
)

// readers may call the read-only methods: lookups, history, balances, the event stream,
// orders, channel status, exception and finding listings.
const readers = accessReader | accessWriter | accessOperator

func (a access) allows(r Role) bool {
	switch r {
	case RoleReader:
		return a&accessReader != 0
	case RoleWriter:
		return a&accessWriter != 0
	case RoleOperator:
		return a&accessOperator != 0
	}
	return false // RoleChannel: no gRPC method
}

// methodRoles is the one table of who may call each gRPC method. A writer moves money and
// makes accounts; an operator moves money only through suspense, by its decisions (an
// exception's refund, a statement record's reversal, a statement import's bookings); only an
// operator changes the server's state otherwise (end of day,
// backups, channel switches, resolutions, statement imports) or runs the whole-store scans.
// Health is open (load balancers probe it without credentials); reflection needs any
// authenticated caller but a channel (the schema is public in the repository, but anonymous
// callers learn nothing from the server).
var methodRoles = map[string]access{
	ledgerv1.LedgerService_CreateAccounts_FullMethodName:        accessWriter,
	ledgerv1.LedgerService_CreateTransfers_FullMethodName:       accessWriter,
	ledgerv1.LedgerService_CreateTransfersStream_FullMethodName: accessWriter,
	ledgerv1.LedgerService_LookupAccounts_FullMethodName:        readers,
	ledgerv1.LedgerService_LookupTransfers_FullMethodName:       readers,
	ledgerv1.LedgerService_GetAccountTransfers_FullMethodName:   readers,
	ledgerv1.LedgerService_GetAccountBalances_FullMethodName:    readers,
	ledgerv1.LedgerService_Subscribe_FullMethodName:             readers,

	ledgerv1.AdminService_Verify_FullMethodName:            accessOperator,
	ledgerv1.AdminService_TrialBalance_FullMethodName:      accessOperator,
	ledgerv1.AdminService_RunEndOfDay_FullMethodName:       accessOperator,
	ledgerv1.AdminService_GetEndOfDayStatus_FullMethodName: accessOperator,
	ledgerv1.AdminService_AcceptEndOfDay_FullMethodName:    accessOperator,
	ledgerv1.AdminService_Backup_FullMethodName:            accessOperator,

	ledgerv1.PaymentService_CreatePayments_FullMethodName:      accessWriter,
	ledgerv1.PaymentService_GetOrders_FullMethodName:           readers,
	ledgerv1.PaymentService_GetOrdersByBizId_FullMethodName:    readers,
	ledgerv1.PaymentService_ReconcileBizId_FullMethodName:      readers,
	ledgerv1.PaymentService_ListExceptions_FullMethodName:      readers,
	ledgerv1.PaymentService_ResolveException_FullMethodName:    accessOperator,
	ledgerv1.PaymentService_ImportStatement_FullMethodName:     accessOperator,
	ledgerv1.PaymentService_SetChannelDegraded_FullMethodName:  accessOperator,
	ledgerv1.PaymentService_ListChannels_FullMethodName:        readers,
	ledgerv1.PaymentService_ListReconFindings_FullMethodName:   readers,
	ledgerv1.PaymentService_ResolveReconFinding_FullMethodName: accessOperator,

	healthpb.Health_Check_FullMethodName: accessOpen,
	healthpb.Health_List_FullMethodName:  accessOpen,
	healthpb.Health_Watch_FullMethodName: accessOpen,

	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      readers,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: readers,
}

// MethodAllows reports whether role may call the gRPC method (full name), and whether the
// method is open to callers without credentials. A method missing from the table allows
// nobody.
func MethodAllows(method string, r Role) (allowed, open bool) {
	a, ok := methodRoles[method]
	if !ok {
		return false, false
	}
	return a&accessOpen != 0 || a.allows(r), a&accessOpen != 0
}

// NotifyMethod is the method label of the payment notify endpoint's denials.
const NotifyMethod = "notify"

// Principal is an authenticated caller.
type Principal struct {
	Role Role
	Name string
}

type principalKey struct{}

// PrincipalFrom answers the caller a request was authenticated as (false: none, auth off or
// an open method called without credentials).
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Limits of the tokens file (units last).
const (
	// AuthFileBytesMax is the largest tokens file read.
	AuthFileBytesMax = 1 << 20
	// TokenBytes is how many random bytes a generated token carries.
	TokenBytes = 32
	// TokenPrefix starts every generated token, so that a leaked one is easy to recognise.
	TokenPrefix = "lt_"
)

// Credentials are the principals of a tokens file: bearer-token hashes and certificate
// identities.
type Credentials struct {
	tokens []tokenEntry
	certs  map[string]Principal // by certificate identity
}

type tokenEntry struct {
	hash      [sha256.Size]byte
	principal Principal
}

// LoadCredentials reads a tokens file (ParseCredentials).
func LoadCredentials(file string) (*Credentials, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, AuthFileBytesMax+1))
	if err != nil {
		return nil, err
	}
	if len(data) > AuthFileBytesMax {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, AuthFileBytesMax)
	}
	return ParseCredentials(file, data)
}

// ParseCredentials reads a tokens file: one principal per line, blank lines and lines
// starting with # ignored:
//
//	ROLE NAME sha256:HEX     a bearer token, by the hex SHA-256 of the whole token
//	ROLE NAME cert:IDENTITY  an mTLS client certificate whose subject CN or a DNS, URI or
//	                         e-mail SAN is IDENTITY
//
// ROLE is reader, writer, operator or channel (channel only for certificates: the notify
// endpoint takes no tokens); NAME names the caller in logs. A hash or an identity may appear
// once. An error names the line.
func ParseCredentials(file string, data []byte) (*Credentials, error) {
	c := &Credentials{certs: map[string]Principal{}}
	hashes := map[[sha256.Size]byte]int{}
	roles := map[string]nameRole{} // a name's role, and the line that gave it first
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), AuthFileBytesMax)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := c.parseLine(line, n, hashes, roles); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(c.tokens) == 0 && len(c.certs) == 0 {
		return nil, fmt.Errorf("%s: no tokens and no certificate identities: nobody could call", file)
	}
	return c, nil
}

// nameRole is the role a caller's name has in the tokens file, and the line that gave it.
type nameRole struct {
	role Role
	line int
}

func (c *Credentials) parseLine(line string, n int, hashes map[[sha256.Size]byte]int, roles map[string]nameRole) error {
	fields := strings.Fields(line)
	if len(fields) != 3 {
		return fmt.Errorf("want ROLE NAME sha256:HEX or ROLE NAME cert:IDENTITY, not %d fields", len(fields))
	}
	role, err := ParseRole(fields[0])
	if err != nil {
		return err
	}
	p := Principal{Role: role, Name: fields[1]}
	// A name may have several credentials (a token and a certificate, or two tokens while one
	// is rotated), all with one role: a name with two roles would make the log ambiguous.
	if first, ok := roles[p.Name]; ok && first.role != role {
		return fmt.Errorf("name %q is %v here and %v at line %d: one role per name", p.Name, role, first.role, first.line)
	} else if !ok {
		roles[p.Name] = nameRole{role, n}
	}
	kind, value, _ := strings.Cut(fields[2], ":")
	switch kind {
	case "sha256":
		if role == RoleChannel {
			return errors.New("a channel has no token: it signs its callbacks (and, with mTLS, shows a certificate: cert:IDENTITY)")
		}
		var h [sha256.Size]byte
		if len(value) != 2*sha256.Size {
			return fmt.Errorf("sha256: want %d hex digits, not %d", 2*sha256.Size, len(value))
		}
		if _, err := hex.Decode(h[:], []byte(value)); err != nil {
			return fmt.Errorf("sha256: %w", err)
		}
		if first, ok := hashes[h]; ok {
			return fmt.Errorf("the same token hash as line %d", first)
		}
		hashes[h] = n
		c.tokens = append(c.tokens, tokenEntry{hash: h, principal: p})
	case "cert":
		if value == "" {
			return errors.New("cert: empty identity")
		}
		if _, ok := c.certs[value]; ok {
			return fmt.Errorf("certificate identity %q given twice", value)
		}
		c.certs[value] = p
	default:
		return fmt.Errorf("credential %q: want sha256:HEX or cert:IDENTITY", fields[2])
	}
	return nil
}

// Certificates is how many certificate identities (cert: lines) the credentials map.
func (c *Credentials) Certificates() int { return len(c.certs) }

// Token answers the principal of a bearer token. Every hash is compared, in constant time,
// whatever matches: the time taken says nothing of which one did.
func (c *Credentials) Token(token string) (Principal, bool) {
	h := sha256.Sum256([]byte(token))
	var found Principal
	ok := 0
	for i := range c.tokens {
		if subtle.ConstantTimeCompare(h[:], c.tokens[i].hash[:]) == 1 {
			found, ok = c.tokens[i].principal, 1
		}
	}
	return found, ok == 1
}

// Certificate answers the principal of a verified client certificate: its subject CN, then
// its DNS, URI and e-mail SANs, the first that the file names.
func (c *Credentials) Certificate(cert *x509.Certificate) (Principal, bool) {
	for _, id := range CertificateIdentities(cert) {
		if p, ok := c.certs[id]; ok {
			return p, true
		}
	}
	return Principal{}, false
}

// CertificateIdentities are the names a certificate may be mapped by, in the order they are
// tried.
func CertificateIdentities(cert *x509.Certificate) []string {
	var ids []string
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	ids = append(ids, cert.DNSNames...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	return append(ids, cert.EmailAddresses...)
}

// tokenName is what NewToken takes as a caller's name: a word the tokens file reads back.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,128}$`)

// NewToken makes a random bearer token and the tokens-file line that grants it role as name.
func NewToken(role Role, name string) (token, line string, err error) {
	if role == RoleChannel {
		return "", "", errors.New("a channel has no token: map its client certificate with a cert: line")
	}
	if !tokenName.MatchString(name) {
		return "", "", fmt.Errorf("name %q: want 1 to 128 of A-Z a-z 0-9 . _ @ -", name)
	}
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, fmt.Sprintf("%s %s sha256:%s", role, name, hex.EncodeToString(h[:])), nil
}

// Authenticator checks every gRPC call against the credentials and methodRoles.
type Authenticator struct {
	creds   *Credentials
	denials *prometheus.CounterVec
}

// NewAuthenticator checks calls against creds, counting denials in m's registry (nil m:
// not counted).
func NewAuthenticator(creds *Credentials, m *Metrics) *Authenticator {
	a := &Authenticator{creds: creds}
	if m != nil {
		a.denials = m.authDenials
	}
	return a
}

// Denials is ledger_auth_denials_total, for the notify endpoint's denials (nil: not counted).
func (a *Authenticator) Denials() *prometheus.CounterVec { return a.denials }

// ServerOptions are the interceptors that authenticate unary and streaming calls.
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream)}
}

func (a *Authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *Authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// authorize runs the checks of the package comment, in order, and answers the context with
// the principal.
func (a *Authenticator) authorize(ctx context.Context, method string) (context.Context, error) {
	p, reason, err := a.authenticate(ctx)
	if _, open := MethodAllows(method, 0); open {
		if err == nil {
			ctx = context.WithValue(ctx, principalKey{}, p)
		}
		return ctx, nil
	}
	if err != nil {
		a.deny(method, reason)
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, ok := methodRoles[method]; !ok {
		a.deny(method, "unlisted")
		return ctx, status.Errorf(codes.PermissionDenied, "%s is not open to any role", method)
	}
	if allowed, _ := MethodAllows(method, p.Role); !allowed {
		a.deny(method, "role")
		return ctx, status.Errorf(codes.PermissionDenied, "%s (%s) may not call %s", p.Name, p.Role, method)
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// authenticate answers the caller: by its bearer token when it sent one, else by its
// verified client certificate; or why not (a denial reason and an error for the caller).
func (a *Authenticator) authenticate(ctx context.Context) (Principal, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		scheme, token, ok := strings.Cut(vals[0], " ")
		if len(vals) != 1 || !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return Principal{}, "malformed", errors.New("authorization: want one \"Bearer TOKEN\"")
		}
		p, ok := a.creds.Token(strings.TrimSpace(token))
		if !ok {
			return Principal{}, "bad_token", errors.New("the bearer token is not one this server knows")
		}
		return p, "", nil
	}
	if cert := verifiedClientCert(ctx); cert != nil {
		if p, ok := a.creds.Certificate(cert); ok {
			return p, "", nil
		}
		return Principal{}, "unknown_cert", fmt.Errorf("the client certificate (%s) names no identity of the tokens file",
			strings.Join(CertificateIdentities(cert), ", "))
	}
	return Principal{}, "missing", errors.New("no credential: send \"authorization: Bearer TOKEN\" or a client certificate")
}

// verifiedClientCert is the leaf of the connection's verified client chain, or nil.
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

func (a *Authenticator) deny(method, reason string) {
	if a.denials != nil {
		a.denials.WithLabelValues(method, reason).Inc()
	}
}
