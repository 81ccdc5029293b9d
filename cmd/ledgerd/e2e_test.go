package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// build compiles a command of this module into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

type server struct {
	cmd    *exec.Cmd
	addr   string
	admin  string // the admin service's address (--admin-listen)
	notify string // the callback endpoint's address
	exited chan error
}

var (
	addrPattern   = regexp.MustCompile(`grpc=(\S+)`)
	notifyPattern = regexp.MustCompile(`notify=(\S+)`)
	adminPattern  = regexp.MustCompile(`admin=(\S+)`)
)

// start runs ledgerd on dataDir with free ports (gRPC, admin and the payment callbacks), no
// limit on Verify's rate (tests verify often), and waits until it serves; extra flags come
// last, so they override those defaults.
func start(t *testing.T, bin, dataDir string, extra ...string) *server {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--listen", "127.0.0.1:0", "--notify-listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--verify-interval", "0", "--metrics-listen", "", "--shards", "4", "--hot-flush-interval", "50ms"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exited: make(chan error, 1)}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrPattern.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "ledgerd serving") {
				found <- []string{sc.Text(), m[1]}
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "ledgerd:", sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.exited <- cmd.Wait()
	}()
	select {
	case m := <-found:
		s.addr = m[1]
		if n := notifyPattern.FindStringSubmatch(m[0]); n != nil {
			s.notify = n[1]
		}
		if a := adminPattern.FindStringSubmatch(m[0]); a != nil {
			s.admin = a[1]
		}
	case err := <-s.exited:
		t.Fatalf("ledgerd exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("ledgerd did not start serving")
	}
	return s
}

func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// dial connects to s's ledger service (s.addr) and admin service (s.admin; none when empty).
func dial(t *testing.T, s *server) (ledgerv1.LedgerServiceClient, ledgerv1.AdminServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if s.admin == "" {
		return ledgerv1.NewLedgerServiceClient(conn), nil, func() { _ = conn.Close() }
	}
	adminConn, err := grpc.NewClient(s.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return ledgerv1.NewLedgerServiceClient(conn), ledgerv1.NewAdminServiceClient(adminConn),
		func() { _ = conn.Close(); _ = adminConn.Close() }
}

const e2eAccounts = 64

// checkAdminApart: the admin service answers on --admin-listen only (with health and
// reflection there too), and ledgerctl pointed at the clients' port says where to look.
func checkAdminApart(ctx context.Context, t *testing.T, srv *server, ledgerctl string) {
	t.Helper()
	clients, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	if _, err := ledgerv1.NewAdminServiceClient(clients).Verify(ctx, &ledgerv1.VerifyRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("AdminService.Verify on --listen: %v, want UNIMPLEMENTED", err)
	}
	admin, err := grpc.NewClient(srv.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	h, err := healthpb.NewHealthClient(admin).Check(ctx, &healthpb.HealthCheckRequest{Service: "ledger.v1.AdminService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of the admin service on --admin-listen: %v %v", h, err)
	}
	if _, err := ledgerv1.NewLedgerServiceClient(admin).LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: []uint64{1}}); status.Code(err) != codes.Unimplemented {
		t.Errorf("LedgerService on --admin-listen: %v, want UNIMPLEMENTED", err)
	}
	out, err := exec.Command(ledgerctl, "verify", "--addr", srv.addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--admin-listen") {
		t.Errorf("ledgerctl verify --addr on --listen: %v\n%s", err, out)
	}
}

// TestKillUnderLoad starts ledgerd as a real process, loads it with transfers from several
// clients (a quarter of them into a hot account), kills it with SIGKILL mid-load, restarts it, and checks that every acknowledged
// transfer is there as sent, that nothing was applied twice (each account's balance is the sum
// of the transfers the store holds), that ledgerctl verify is clean on the running server and,
// after a clean SIGTERM stop, on the stopped store.
func TestKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ledgerd := build(t, dir, "./cmd/ledgerd")
	ledgerctl := build(t, dir, "./cmd/ledgerctl")
	dataDir := filepath.Join(dir, "data")

	srv := start(t, ledgerd, dataDir)
	client, _, closeConn := dial(t, srv)
	ctx := context.Background()
	var accounts []*ledgerv1.Account
	for id := uint64(1); id <= e2eAccounts; id++ {
		accounts = append(accounts, &ledgerv1.Account{Id: id, Ledger: 1, Code: 10})
	}
	// Account 1 is hot: a quarter of the transfers pay into it, and those from other shards
	// wait in the senders' buffers (50 ms) after their replies, so the kill finds some there.
	accounts[0].Flags = &ledgerv1.AccountFlags{Hot: true, Internal: true}
	if resp, err := client.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: accounts}); err != nil || len(resp.GetResults()) > 0 {
		t.Fatalf("create accounts: %v %v", resp, err)
	}

	const clients = 8
	var (
		mu       sync.Mutex
		sent     = map[uint64]*ledgerv1.Transfer{}
		acked    = map[uint64]bool{}
		stop     atomic.Bool
		wg       sync.WaitGroup
		ackedN   atomic.Int64
		requests atomic.Int64
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for seq := uint64(0); !stop.Load(); seq++ {
				batch := make([]*ledgerv1.Transfer, 50)
				for i := range batch {
					d := rng.Uint64N(e2eAccounts) + 1
					cr := (d+rng.Uint64N(e2eAccounts-1))%e2eAccounts + 1
					if d != 1 && rng.Uint64N(4) == 0 {
						cr = 1
					}
					batch[i] = &ledgerv1.Transfer{Id: uint64(c+1)<<40 | seq<<8 | uint64(i), DebitAccountId: d,
						CreditAccountId: cr, Amount: rng.Uint64N(1000) + 1, Ledger: 1, Code: 1,
						BizId: fmt.Sprintf("order-%d-%d", c, seq)}
				}
				mu.Lock()
				for _, tr := range batch {
					sent[tr.GetId()] = tr
				}
				mu.Unlock()
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := client.CreateTransfers(rctx, &ledgerv1.CreateTransfersRequest{Transfers: batch})
				cancel()
				requests.Add(1)
				if err != nil {
					return // the server is gone
				}
				failed := map[uint32]bool{}
				for _, r := range resp.GetResults() {
					failed[r.GetIndex()] = true
				}
				mu.Lock()
				for i, tr := range batch {
					if !failed[uint32(i)] {
						acked[tr.GetId()] = true
						ackedN.Add(1)
					} else {
						t.Errorf("transfer %d refused: %v", tr.GetId(), resp.GetResults())
					}
				}
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for ackedN.Load() < 20000 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	stop.Store(true)
	wg.Wait()
	closeConn()
	t.Logf("killed after %d requests, %d transfers acknowledged, %d sent", requests.Load(), len(acked), len(sent))
	if len(acked) == 0 {
		t.Fatal("no transfer was acknowledged before the kill")
	}

	srv = start(t, ledgerd, dataDir)
	client, admin, closeConn := dial(t, srv)
	defer closeConn()
	present := map[uint64]*ledgerv1.Transfer{}
	ids := make([]uint64, 0, len(sent))
	for id := range sent {
		ids = append(ids, id)
	}
	for i := 0; i < len(ids); i += 8190 {
		resp, err := client.LookupTransfers(ctx, &ledgerv1.LookupTransfersRequest{Ids: ids[i:min(i+8190, len(ids))]})
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range resp.GetTransfers() {
			present[tr.GetId()] = tr
		}
	}
	for id := range acked {
		got, ok := present[id]
		if !ok {
			t.Fatalf("acknowledged transfer %d lost", id)
		}
		want := proto.Clone(sent[id]).(*ledgerv1.Transfer)
		want.Timestamp, want.State = got.GetTimestamp(), ledgerv1.TransferState_TRANSFER_STATE_POSTED
		want.Flags = &ledgerv1.TransferFlags{}
		if !proto.Equal(got, want) {
			t.Fatalf("transfer %d: stored %v, sent %v", id, got, want)
		}
	}
	// Exactly once: each balance is the sum of the stored transfers (after the outbox drains).
	wantDebits, wantCredits := map[uint64]uint64{}, map[uint64]uint64{}
	for _, tr := range present {
		wantDebits[tr.GetDebitAccountId()] += tr.GetAmount()
		wantCredits[tr.GetCreditAccountId()] += tr.GetAmount()
	}
	var mismatch string
	for try := 0; try < 200; try++ {
		mismatch = ""
		resp, err := client.LookupAccounts(ctx, &ledgerv1.LookupAccountsRequest{Ids: func() []uint64 {
			var out []uint64
			for id := uint64(1); id <= e2eAccounts; id++ {
				out = append(out, id)
			}
			return out
		}()})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetAccounts() {
			if a.GetDebitsPosted().GetHi() != 0 || a.GetCreditsPosted().GetHi() != 0 ||
				a.GetDebitsPosted().GetLo() != wantDebits[a.GetId()] || a.GetCreditsPosted().GetLo() != wantCredits[a.GetId()] {
				mismatch = fmt.Sprintf("account %d: debits %v credits %v, stored transfers say %d and %d", a.GetId(),
					a.GetDebitsPosted(), a.GetCreditsPosted(), wantDebits[a.GetId()], wantCredits[a.GetId()])
			}
		}
		if mismatch == "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if mismatch != "" {
		t.Fatal(mismatch)
	}
	t.Logf("after restart: %d of %d sent transfers present, all %d acknowledged ones among them", len(present), len(sent), len(acked))

	v, err := admin.Verify(ctx, &ledgerv1.VerifyRequest{})
	if err != nil || len(v.GetProblems()) > 0 {
		t.Fatalf("verify on the running server: %v %v", v.GetProblems(), err)
	}
	if out, err := exec.Command(ledgerctl, "verify", "--addr", srv.admin).CombinedOutput(); err != nil {
		t.Fatalf("ledgerctl verify --addr: %v\n%s", err, out)
	}
	checkAdminApart(ctx, t, srv, ledgerctl)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.exited:
		if err != nil {
			t.Fatalf("ledgerd after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ledgerd did not stop on SIGTERM")
	}
	out, err := exec.Command(ledgerctl, "verify", "--data-dir", dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": 0 problems") {
		t.Fatalf("ledgerctl verify --data-dir: %v\n%s", err, out)
	}
	t.Logf("ledgerctl: %s", strings.TrimSpace(string(out)))
}

// TestMetricsAndHealth: the metrics port serves /healthz and the ledger's metrics (with
// --recon-follow: the reconciliation's metrics exist only while it runs, as the README says).
func TestMetricsAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ledgerd := build(t, dir, "./cmd/ledgerd")
	lis := freePort(t)
	cmd := exec.Command(ledgerd, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--notify-listen", "127.0.0.1:0", "--metrics-listen", lis, "--shards", "2", "--fake-channel", "demo",
		"--recon-follow", "--backup-root", filepath.Join(dir, "backups")) // the backup metrics are served with backups on
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var body string
	for try := 0; try < 300; try++ {
		resp, err := http.Get("http://" + lis + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every metric the README documents is served, except those that appear only once their
	// event happened (a gRPC request, a split transfer, a call to a channel).
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	later := map[string]bool{"ledger_grpc_request_duration_seconds": true, "ledger_transit_balance": true,
		"ledger_channel_requests_total": true, "ledger_channel_queries_total": true,
		"ledger_channel_rejections_total": true, "ledger_channel_request_seconds": true,
		// Only with --events-nats (a lag gauge without a publisher would alert for nothing).
		"ledger_events_nats_acked_sequence": true, "ledger_events_nats_lag_events": true,
		"ledger_events_nats_errors_total": true, "ledger_events_nats_restarts_total": true,
		// Per ledger, once an end of day ran its trial balance.
		"ledger_eod_trial_balance_failed": true,
		// Only with --backup-root (backups are off by default).
		"ledger_backups_total": true, "ledger_backup_last_success_timestamp_seconds": true,
		"ledger_backup_last_duration_seconds": true, "ledger_backup_last_bytes": true}
	var documented []string
	name := regexp.MustCompile("`(ledger_[a-z0-9_]+)")
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `ledger_") {
			for _, m := range name.FindAllStringSubmatch(strings.SplitN(line, "|", 3)[1], -1) {
				documented = append(documented, m[1])
			}
		}
	}
	if len(documented) < 25 {
		t.Fatalf("found only %d metrics in the README's table", len(documented))
	}
	for _, m := range documented {
		if !later[m] && !strings.Contains(body, "\n"+m) {
			t.Errorf("/metrics lacks %s, which the README documents", m)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	resp, err := http.Get("http://" + lis + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}
