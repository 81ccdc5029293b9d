package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ledgercore/ledger/internal/testcerts"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// wantAccess is who may call each method, written out apart from methodRoles so that a
// change to either shows in review: r reader, w writer, o operator, c channel; * anyone,
// without credentials.
var wantAccess = map[string]string{
	"/ledger.v1.LedgerService/CreateAccounts":        "w",
	"/ledger.v1.LedgerService/CreateTransfers":       "w",
	"/ledger.v1.LedgerService/CreateTransfersStream": "w",
	"/ledger.v1.LedgerService/LookupAccounts":        "rwo",
	"/ledger.v1.LedgerService/LookupTransfers":       "rwo",
	"/ledger.v1.LedgerService/GetAccountTransfers":   "rwo",
	"/ledger.v1.LedgerService/GetAccountBalances":    "rwo",
	"/ledger.v1.LedgerService/Subscribe":             "rwo",

	"/ledger.v1.AdminService/Verify":            "o",
	"/ledger.v1.AdminService/TrialBalance":      "o",
	"/ledger.v1.AdminService/RunEndOfDay":       "o",
	"/ledger.v1.AdminService/GetEndOfDayStatus": "o",
	"/ledger.v1.AdminService/AcceptEndOfDay":    "o",
	"/ledger.v1.AdminService/Backup":            "o",

	"/ledger.v1.PaymentService/CreatePayments":      "w",
	"/ledger.v1.PaymentService/GetOrders":           "rwo",
	"/ledger.v1.PaymentService/GetOrdersByBizId":    "rwo",
	"/ledger.v1.PaymentService/ReconcileBizId":      "rwo",
	"/ledger.v1.PaymentService/ListExceptions":      "rwo",
	"/ledger.v1.PaymentService/ResolveException":    "o",
	"/ledger.v1.PaymentService/ImportStatement":     "o",
	"/ledger.v1.PaymentService/SetChannelDegraded":  "o",
	"/ledger.v1.PaymentService/ListChannels":        "rwo",
	"/ledger.v1.PaymentService/ListReconFindings":   "rwo",
	"/ledger.v1.PaymentService/ResolveReconFinding": "o",

	"/grpc.health.v1.Health/Check": "*",
	"/grpc.health.v1.Health/List":  "*",
	"/grpc.health.v1.Health/Watch": "*",

	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      "rwo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "rwo",
}

var roleLetter = map[Role]string{RoleReader: "r", RoleWriter: "w", RoleOperator: "o", RoleChannel: "c"}

// servedMethods are the methods ledgerd's gRPC servers register (the clients' server: the
// ledger and payment services; the admin server: the admin service; both health and
// reflection), and whether each streams.
func servedMethods(t *testing.T) map[string]bool {
	t.Helper()
	svc := NewService(nil, nil)
	srv, _ := NewServer(svc)
	RegisterPayments(srv, nil, nil)
	admin, _ := NewAdminServer(svc)
	out := map[string]bool{}
	for _, s := range []*grpc.Server{srv, admin} {
		for name, info := range s.GetServiceInfo() {
			for _, m := range info.Methods {
				out["/"+name+"/"+m.Name] = m.IsClientStream || m.IsServerStream
			}
		}
	}
	return out
}

// TestMethodTableCoversEveryMethod: every method of every service of the generated ledger
// descriptors, and every method the server registers, is in the table (a new RPC without an
// entry fails here, and is refused to everyone until it has one), and the table names no
// method that does not exist.
func TestMethodTableCoversEveryMethod(t *testing.T) {
	served := servedMethods(t)
	described := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("ledger.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				name := fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(j).Name())
				described++
				if _, ok := methodRoles[name]; !ok {
					t.Errorf("%s (in %s) has no entry in methodRoles", name, fd.Path())
				}
				if _, ok := served[name]; !ok {
					t.Errorf("%s is described but not served", name)
				}
			}
		}
		return true
	})
	if described < 24 {
		t.Errorf("only %d methods in the ledger.v1 descriptors", described)
	}
	for name := range served {
		if _, ok := methodRoles[name]; !ok {
			t.Errorf("%s is served but has no entry in methodRoles", name)
		}
		if _, ok := wantAccess[name]; !ok {
			t.Errorf("%s is served but not in wantAccess", name)
		}
	}
	for name := range methodRoles {
		if _, ok := served[name]; !ok {
			t.Errorf("methodRoles names %s, which the server does not serve", name)
		}
	}
}

// testCreds has one token per role but channel, and one certificate identity per role.
func testCreds(t *testing.T) (*Credentials, map[Role]string) {
	t.Helper()
	tokens := map[Role]string{}
	var lines []string
	for _, r := range Roles {
		lines = append(lines, fmt.Sprintf("%s %s-cert cert:%s.example", r, r, r))
		if r == RoleChannel {
			continue
		}
		tok, line, err := NewToken(r, r.String()+"-svc")
		if err != nil {
			t.Fatal(err)
		}
		tokens[r] = tok
		lines = append(lines, line)
	}
	c, err := ParseCredentials("tokens", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return c, tokens
}

// call runs method through the authenticator's interceptor for its kind (unary or stream),
// with md as the incoming metadata, and answers the code and whether the handler ran.
func call(a *Authenticator, method string, stream bool, md metadata.MD) (codes.Code, bool) {
	return callAs(a, method, stream, md, nil)
}

// callAs is call on a connection whose verified client certificate is cert (nil: none).
func callAs(a *Authenticator, method string, stream bool, md metadata.MD, cert *x509.Certificate) (codes.Code, bool) {
	ctx := metadata.NewIncomingContext(context.Background(), md)
	if cert != nil {
		ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
			VerifiedChains: [][]*x509.Certificate{{cert}}}}})
	}
	ran := false
	var err error
	if stream {
		err = a.stream(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: method},
			func(_ any, ss grpc.ServerStream) error {
				_, known := PrincipalFrom(ss.Context())
				_, open := MethodAllows(method, 0)
				ran = known || open
				return nil
			})
	} else {
		_, err = a.unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method},
			func(ctx context.Context, _ any) (any, error) {
				// The handler knows its caller (not asserted for open methods, which take
				// calls without one).
				_, known := PrincipalFrom(ctx)
				_, open := MethodAllows(method, 0)
				ran = known || open
				return nil, nil
			})
	}
	return status.Code(err), ran
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

// TestEveryMethodEveryRole calls every served method through the interceptors as every
// role, without credentials, with a bad token and with a malformed header, and checks the
// answer and the denial counted.
func TestEveryMethodEveryRole(t *testing.T) {
	creds, tokens := testCreds(t)
	m := NewMetrics()
	a := NewAuthenticator(creds, m)
	served := servedMethods(t)
	methods := make([]string, 0, len(served))
	for name := range served {
		methods = append(methods, name)
	}
	sort.Strings(methods)
	for _, method := range methods {
		stream := served[method]
		want := wantAccess[method]
		open := want == "*"
		check := func(who string, md metadata.MD, cert *x509.Certificate, wantCode codes.Code, reason string) {
			t.Helper()
			before := testutil.ToFloat64(m.authDenials.WithLabelValues(method, reason))
			code, ran := callAs(a, method, stream, md, cert)
			if code != wantCode || ran != (wantCode == codes.OK) {
				t.Errorf("%s as %s: %v (handler ran %v), want %v", method, who, code, ran, wantCode)
			}
			if after := testutil.ToFloat64(m.authDenials.WithLabelValues(method, reason)); wantCode != codes.OK && after != before+1 {
				t.Errorf("%s as %s: ledger_auth_denials_total{reason=%q} %v -> %v, want one more", method, who, reason, before, after)
			}
		}
		for _, r := range Roles {
			wantCode := codes.PermissionDenied
			if open || strings.Contains(want, roleLetter[r]) {
				wantCode = codes.OK
			}
			if r != RoleChannel { // a channel has no token
				check(r.String()+" by token", metadata.Pairs("authorization", "Bearer "+tokens[r]), nil, wantCode, "role")
			}
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: r.String() + ".example"}}
			check(r.String()+" by certificate", metadata.MD{}, cert, wantCode, "role")
		}
		unauth := codes.Unauthenticated
		if open {
			unauth = codes.OK
		}
		check("nobody", metadata.MD{}, nil, unauth, "missing")
		check("a bad token", metadata.Pairs("authorization", "Bearer lt_not-a-token"), nil, unauth, "bad_token")
		check("a basic header", metadata.Pairs("authorization", "Basic dXNlcjpwdw=="), nil, unauth, "malformed")
		check("an unknown certificate", metadata.MD{}, &x509.Certificate{Subject: pkix.Name{CommonName: "stranger"}}, unauth, "unknown_cert")
	}
}

// TestReaderNeverMovesMoney: no method a reader may call changes anything (by its name), and
// every method that moves money is the writer's alone.
func TestReaderNeverMovesMoney(t *testing.T) {
	for method := range servedMethods(t) {
		name := method[strings.LastIndex(method, "/")+1:]
		readOnly := false
		for _, prefix := range []string{"Lookup", "Get", "List", "Subscribe", "Reconcile", "ServerReflectionInfo", "Check", "Watch"} {
			readOnly = readOnly || strings.HasPrefix(name, prefix)
		}
		if ok, _ := MethodAllows(method, RoleReader); ok && !readOnly {
			t.Errorf("a reader may call %s, which is not a read", method)
		}
		if strings.HasPrefix(name, "Create") {
			for _, r := range Roles {
				if ok, _ := MethodAllows(method, r); ok != (r == RoleWriter) {
					t.Errorf("%s: %s allowed %v", method, r, ok)
				}
			}
		}
	}
	if ok, _ := MethodAllows("/ledger.v1.LedgerService/NoSuchMethod", RoleOperator); ok {
		t.Error("a method missing from the table is allowed")
	}
}

// TestUnlistedMethodDenied: a method missing from the table is refused to every role.
func TestUnlistedMethodDenied(t *testing.T) {
	creds, tokens := testCreds(t)
	m := NewMetrics()
	a := NewAuthenticator(creds, m)
	for _, r := range []Role{RoleReader, RoleWriter, RoleOperator} {
		code, ran := call(a, "/ledger.v1.LedgerService/Future", false, metadata.Pairs("authorization", "Bearer "+tokens[r]))
		if code != codes.PermissionDenied || ran {
			t.Errorf("%s: %v", r, code)
		}
	}
	if got := testutil.ToFloat64(m.authDenials.WithLabelValues("/ledger.v1.LedgerService/Future", "unlisted")); got != 3 {
		t.Errorf("unlisted denials %v, want 3", got)
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	hash := strings.Repeat("ab", sha256.Size)
	for _, tc := range []struct{ file, want string }{
		{"", "no tokens"},
		{"# only a comment\n\n", "no tokens"},
		{"writer svc sha256:" + hash + "\nreader\n", "tokens:2: want ROLE NAME"},
		{"\n\nadmin svc sha256:" + hash, "tokens:3: unknown role \"admin\""},
		{"writer svc sha256:abc", "tokens:1: sha256: want 64 hex digits, not 3"},
		{"writer svc sha256:" + strings.Repeat("zz", sha256.Size), "tokens:1: sha256: encoding/hex"},
		{"writer a sha256:" + hash + "\nreader b sha256:" + hash, "tokens:2: the same token hash as line 1"},
		{"writer svc md5:abc", "tokens:1: credential \"md5:abc\""},
		{"writer svc " + hash, "tokens:1: credential"},
		{"channel acme sha256:" + hash, "tokens:1: a channel has no token"},
		{"channel acme cert:", "tokens:1: cert: empty identity"},
		{"reader a cert:x\noperator b cert:x", "tokens:2: certificate identity \"x\" given twice"},
		{"reader a b sha256:" + hash, "tokens:1: want ROLE NAME sha256:HEX or ROLE NAME cert:IDENTITY, not 4 fields"},
		{"reader alice sha256:" + hash + "\noperator alice cert:alice.example", "tokens:2: name \"alice\" is operator here and reader at line 1"},
	} {
		_, err := ParseCredentials("tokens", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
	}
	// One name, one role, several credentials (a token being rotated, a certificate).
	other := strings.Repeat("cd", sha256.Size)
	c, err := ParseCredentials("tokens", []byte("# ops\n  operator ops-1 sha256:"+hash+"  \nchannel acme cert:acme.example\n"+
		"operator ops-1 sha256:"+other+"\noperator ops-1 cert:ops.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.tokens) != 2 || c.certs["acme.example"] != (Principal{RoleChannel, "acme"}) || c.certs["ops.example"] != (Principal{RoleOperator, "ops-1"}) {
		t.Errorf("parsed %+v", c)
	}
}

func TestNewToken(t *testing.T) {
	tok, line, err := NewToken(RoleWriter, "payments-svc")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(tok))
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) < 40 || line != "writer payments-svc sha256:"+hex.EncodeToString(h[:]) {
		t.Errorf("token %q line %q", tok, line)
	}
	c, err := ParseCredentials("tokens", []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Token(tok); !ok || p != (Principal{RoleWriter, "payments-svc"}) {
		t.Errorf("token answers %+v %v", p, ok)
	}
	if _, ok := c.Token(tok + "x"); ok {
		t.Error("a longer token matches")
	}
	if _, _, err := NewToken(RoleChannel, "acme"); err == nil {
		t.Error("a channel token was made")
	}
	if _, _, err := NewToken(RoleReader, "two words"); err == nil {
		t.Error("a name with a space was taken")
	}
}

// TestMTLSIdentities serves gRPC over mTLS (certificates made here) and calls it with client
// certificates mapped by CN and by DNS SAN, one the file does not name, and a token over a
// certificate.
func TestMTLSIdentities(t *testing.T) {
	ca := testcerts.NewCA(t, "test CA")
	other := testcerts.NewCA(t, "other CA")
	hash := sha256.Sum256([]byte("tok-writer"))
	creds, err := ParseCredentials("tokens", []byte(fmt.Sprintf(
		"reader dash cert:dashboard\noperator ops cert:ops.example\nwriter svc sha256:%x\n", hash)))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	a := NewAuthenticator(creds, m)
	serverCert := ca.Server(t).TLS(t)
	tlsConf := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv := grpc.NewServer(append(a.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsConf)))...)
	ledgerv1.RegisterLedgerServiceServer(srv, ledgerv1.UnimplementedLedgerServiceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	dial := func(cert tls.Certificate) ledgerv1.LedgerServiceClient {
		conf := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return ledgerv1.NewLedgerServiceClient(conn)
	}
	ctx := context.Background()
	// Allowed calls reach the (unimplemented) handler.
	lookup := func(c ledgerv1.LedgerServiceClient, ctx context.Context) codes.Code {
		_, err := c.LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: []uint64{1}})
		return status.Code(err)
	}
	transfer := func(c ledgerv1.LedgerServiceClient, ctx context.Context) codes.Code {
		_, err := c.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{})
		return status.Code(err)
	}
	byCN := dial(ca.Client(t, "dashboard").TLS(t))
	bySAN := dial(ca.Client(t, "ignored-cn", "ops.example").TLS(t))
	unknown := dial(ca.Client(t, "stranger").TLS(t))
	for _, tc := range []struct {
		name string
		got  codes.Code
		want codes.Code
	}{
		{"reader by CN looks up", lookup(byCN, ctx), codes.Unimplemented},
		{"reader by CN transfers", transfer(byCN, ctx), codes.PermissionDenied},
		{"operator by SAN looks up", lookup(bySAN, ctx), codes.Unimplemented},
		{"operator by SAN transfers", transfer(bySAN, ctx), codes.PermissionDenied},
		{"unknown certificate", lookup(unknown, ctx), codes.Unauthenticated},
		{"token over a reader's certificate", transfer(byCN, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-writer")), codes.Unimplemented},
		{"bad token over a reader's certificate", lookup(byCN, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nope")), codes.Unauthenticated},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.authDenials.WithLabelValues(ledgerv1.LedgerService_LookupAccounts_FullMethodName, "unknown_cert")); got != 1 {
		t.Errorf("unknown_cert denials %v", got)
	}
	// A certificate of another CA does not get through the handshake.
	foreign := dial(other.Client(t, "dashboard").TLS(t))
	if code := lookup(foreign, ctx); code != codes.Unavailable {
		t.Errorf("a certificate of another CA: %v, want UNAVAILABLE (handshake refused)", code)
	}
}
