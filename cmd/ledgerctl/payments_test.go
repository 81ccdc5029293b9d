package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// ledgerd is a ledgerd process started for a test: its gRPC, admin and callback addresses.
type ledgerd struct {
	grpc, admin, notify string
	fake                string // the simulated channel's URL
}

var servingPattern = regexp.MustCompile(`"ledgerd serving" grpc=(\S+) admin=(\S+) .*notify=(\S+)`)

var fakePattern = regexp.MustCompile(`simulated payment channel started.* url=(\S+)`)

// startLedgerd builds ledgerd and runs it on a new store with a simulated channel "demo"
// (the demo secret), every port picked free, until the test ends.
func startLedgerd(t *testing.T) ledgerd {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ledgerd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ledgerd")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ledgerd: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--metrics-listen", "", "--notify-listen", "127.0.0.1:0", "--fake-channel", "demo",
		"--fake-latency", "1ms", "--shards", "2")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	found := make(chan []string, 1)
	fakeURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingPattern.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
			if m := fakePattern.FindStringSubmatch(sc.Text()); m != nil {
				fakeURL <- m[1]
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "ledgerd:", sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	select {
	case m := <-found:
		return ledgerd{grpc: m[1], admin: m[2], notify: m[3], fake: <-fakeURL}
	case err := <-exited:
		t.Fatalf("ledgerd exited before serving: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("ledgerd did not start serving")
	}
	return ledgerd{}
}

// ctl runs ledgerctl and answers its exit status, stdout and stderr.
func ctl(args ...string) (int, string, string) {
	var out, errs bytes.Buffer
	code := run(args, &out, &errs)
	return code, out.String(), errs.String()
}

// TestPaymentCommands: channels, channel degrade/restore, orders, exceptions and resolve
// against a running ledgerd, with an exception made by a signed callback.
func TestPaymentCommands(t *testing.T) {
	srv := startLedgerd(t)
	addr := srv.grpc
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Channels, and the degradation switch.
	code, out, errs := ctl("channels", "--addr", addr)
	if code != 0 || !regexp.MustCompile(`(?m)^NAME +DEGRADED +CIRCUIT +IN FLIGHT +QUEUED\n^demo +false +closed +0 +0$`).MatchString(out) {
		t.Fatalf("channels: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("channel", "degrade", "demo", "--addr", addr); code != 0 ||
		!regexp.MustCompile(`(?m)^demo +true +closed`).MatchString(out) {
		t.Fatalf("channel degrade: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = ctl("channels", "--addr", addr); code != 0 || !regexp.MustCompile(`(?m)^demo +true `).MatchString(out) {
		t.Fatalf("channels after degrade: exit %d\n%s", code, out)
	}
	if code, out, errs = ctl("channel", "restore", "--addr", addr, "demo"); code != 0 ||
		!regexp.MustCompile(`(?m)^demo +false +closed`).MatchString(out) {
		t.Fatalf("channel restore: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("channel", "degrade", "--addr", addr, "nope"); code != 1 || out != "" ||
		errs != "channel degrade: no payment channel \"nope\"\n" {
		t.Fatalf("unknown channel: exit %d\n%s%s", code, out, errs)
	}

	// A recharge through the simulated channel.
	lc := ledgerv1.NewLedgerServiceClient(conn)
	ar, err := lc.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{{Id: 1, Ledger: 1, Code: 2001}}})
	if err != nil || len(ar.GetResults()) != 0 {
		t.Fatalf("create account: %v %v", ar, err)
	}
	pc := ledgerv1.NewPaymentServiceClient(conn)
	cr, err := pc.CreatePayments(ctx, &ledgerv1.CreatePaymentsRequest{Requests: []*ledgerv1.PaymentRequest{{
		IdempotencyKey: "k1", BizId: "biz 1", Form: ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE, Ledger: 1, Amount: 1000,
		ToAccountId: 1, Channel: "demo", ChannelAccount: "card-1"}}})
	if err != nil || cr.GetResults()[0].GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_OK {
		t.Fatalf("create payment: %v %v", cr, err)
	}
	id := cr.GetResults()[0].GetOrder().GetId()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, err := pc.GetOrders(ctx, &ledgerv1.GetOrdersRequest{Ids: []uint64{id}})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetOrders()[0].GetState() == ledgerv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d did not succeed: %v", id, r.GetOrders()[0])
		}
	}
	no := fmt.Sprintf("P%d", id)
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +recharge +succeeded +ok +10\.00 +CNY +demo +%s +\S+ +biz 1 +false$`, id, no))
	code, out, errs = ctl("orders", "--addr", addr, fmt.Sprint(id))
	if code != 0 || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "CHANNEL ORDER NO") || !row.MatchString(out) {
		t.Fatalf("orders: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("orders", "--addr", addr, "--biz-id", "biz 1"); code != 0 || !row.MatchString(out) {
		t.Fatalf("orders --biz-id: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("orders", "--addr", addr, fmt.Sprint(id), "999"); code != 1 || !row.MatchString(out) ||
		errs != "orders: 1 of 2 not found\n" {
		t.Fatalf("orders with a missing id: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs = ctl("orders", "--addr", addr, "--biz-id", "none"); code != 1 || errs != "orders: no order with biz id \"none\"\n" {
		t.Fatalf("orders of an unknown biz id: exit %d\n%s", code, errs)
	}

	// The channel reports a failure for the paid order: a status conflict for an operator.
	body, sig := channel.SignNotice([]byte(fake.DemoSecret), channel.Notice{Op: channel.Pay, OrderNo: no, Txn: "late-txn",
		Status: channel.Failed, Amount: 1000, BizID: "biz 1"})
	req, err := http.NewRequest(http.MethodPost, "http://"+srv.notify+"/notify/demo", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(channel.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("notice: %s", resp.Status)
	}
	excRow := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +0 +status_conflict +open +late-txn +10\.00 +CNY +the channel reported .* +biz 1$`, id))
	code, out, errs = ctl("exceptions", "--addr", addr)
	if code != 0 || !strings.HasPrefix(out, "ORDER  INDEX  KIND") || !excRow.MatchString(out) {
		t.Fatalf("exceptions: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = ctl("orders", "--addr", addr, fmt.Sprint(id)); code != 0 || !excRow.MatchString(out) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^%d +recharge .* true$`, id)).MatchString(out) {
		t.Fatalf("orders with an exception: exit %d\n%s", code, out)
	}

	// Nothing to refund in a status conflict; close it; closed, it is no longer open.
	if code, out, errs = ctl("resolve", "--addr", addr, fmt.Sprint(id), "0", "refund"); code != 1 || out != "" ||
		errs != fmt.Sprintf("resolve: order %d exception 0: not_refundable\n", id) {
		t.Fatalf("resolve refund: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("resolve", fmt.Sprint(id), "0", "close", "--addr", addr, "--note", "checked\twith the bank"); code != 0 || out != "ok\n" {
		t.Fatalf("resolve close: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("resolve", "--addr", addr, fmt.Sprint(id), "0", "close"); code != 1 ||
		errs != fmt.Sprintf("resolve: order %d exception 0: exception_not_open\n", id) {
		t.Fatalf("resolve again: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs = ctl("resolve", "--addr", addr, "999", "0", "close"); code != 1 || !strings.Contains(errs, "order_not_found") {
		t.Fatalf("resolve a missing order: exit %d\n%s", code, errs)
	}
	if code, out, _ = ctl("exceptions", "--addr", addr); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("exceptions after resolving: exit %d\n%s", code, out)
	}
	resolved := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +0 +status_conflict +resolved +late-txn +10\.00 +CNY +checked with the bank +biz 1$`, id))
	if code, out, _ = ctl("exceptions", "--addr", addr, "--all", "--after", "0", "--limit", "10"); code != 0 || !resolved.MatchString(out) {
		t.Fatalf("exceptions --all: exit %d\n%s", code, out)
	}
	if code, out, _ = ctl("exceptions", "--addr", addr, "--all", "--after", fmt.Sprint(id)); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("exceptions --after: exit %d\n%s", code, out)
	}

	// ledgerd's trial balance sums by the chart it posts by: the payment layer's accounts are
	// classified, and the books balance (transit may still carry split legs: exit 0 or 1).
	code, out, errs = ctl("trial-balance", "--addr", srv.admin)
	if code > 1 || !strings.HasPrefix(out, "ledger ") || strings.Contains(out, "unclassified") ||
		!regexp.MustCompile(`(?m)^  1122 +channel receivable +asset +debit +[1-9]`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^balanced`).MatchString(out) {
		t.Fatalf("trial-balance: exit %d\n%s%s", code, out, errs)
	}
	// The biz id reconciles: its order, its channel outcome and its one ledger transfer agree
	// (the status conflict is an operator's matter, not a disagreement). A transfer made with
	// the biz id straight through the ledger is no order's.
	if code, out, errs = ctl("recon", "--addr", addr, "--biz-id", "biz 1"); code != 0 ||
		out != "biz id \"biz 1\": 1 orders, 1 ledger transfers\nagree: no difference\n" {
		t.Fatalf("recon: exit %d\n%s%s", code, out, errs)
	}
	ar, err = lc.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{{Id: 2, Ledger: 1, Code: 2001}}})
	if err != nil || len(ar.GetResults()) != 0 {
		t.Fatalf("create account: %v %v", ar, err)
	}
	tr, err := lc.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{{Id: 77,
		DebitAccountId: 1, CreditAccountId: 2, Amount: 5, Ledger: 1, Code: 1, BizId: "biz 1"}}})
	if err != nil || len(tr.GetResults()) != 0 {
		t.Fatalf("create transfer: %v %v", tr, err)
	}
	if code, out, errs = ctl("recon", "--addr", addr, "--biz-id", "biz 1"); code != 1 ||
		!strings.HasPrefix(out, "biz id \"biz 1\": 1 orders, 2 ledger transfers\n1 differences (amounts in minor units):\n  unmatched transfer 77: ") {
		t.Fatalf("recon with a stray transfer: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = ctl("recon", "--addr", addr, "--biz-id", "none"); code != 0 || !strings.Contains(out, "0 orders, 0 ledger transfers") {
		t.Fatalf("recon of an unknown biz id: exit %d\n%s%s", code, out, errs)
	}

	// The channel's statement of the day the order was recorded: that day has not ended, so
	// ledgerd refuses to import it (the channel has no statement of a day not over, and a
	// statement of part of a day would make every later txn short): exit 2, nothing written.
	// Two days before is over and quiet: its (empty, signed) statement is clean. (The classes,
	// records and their resolution through ledgerctl: TestStatementCommands.)
	got, err := pc.GetOrders(ctx, &ledgerv1.GetOrdersRequest{Ids: []uint64{id}})
	if err != nil {
		t.Fatal(err)
	}
	updated := time.Unix(0, int64(got.GetOrders()[0].GetUpdated())).UTC()
	date := updated.Format(time.DateOnly)
	if code, out, errs = ctl("statement", "--addr", addr, "--channel", "demo", "--date", date); code != 2 ||
		!strings.Contains(errs, "InvalidArgument") || !strings.Contains(errs, "the day has not ended") {
		t.Fatalf("statement of a day not over: exit %d\n%s%s", code, out, errs)
	}
	before := updated.AddDate(0, 0, -2).Format(time.DateOnly) // over, even just after midnight
	if code, out, errs = ctl("statement", "--addr", addr, "--channel", "demo", "--date", before); code != 0 ||
		!strings.Contains(out, ": 0 lines; matched 0, duplicate 0, held 0, long 0") || !strings.HasSuffix(out, "no differences\n") {
		t.Fatalf("statement of the day before: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs = ctl("statement", "--addr", addr, "--channel", "nope", "--date", date); code != 2 || !strings.Contains(errs, "NotFound") {
		t.Fatalf("statement of an unknown channel: exit %d\n%s", code, errs)
	}
}

// TestPaymentCommandsArgs: --help exits 0; bad arguments exit 2 with the reason, before any
// connection; an unreachable ledgerd exits 2.
func TestPaymentCommandsArgs(t *testing.T) {
	for _, args := range [][]string{{"channels", "--help"}, {"channel", "--help"}, {"channel", "degrade", "--help"},
		{"channel", "restore", "-h"}, {"orders", "--help"}, {"exceptions", "--help"}, {"resolve", "--help"},
		{"resolve", "1", "0", "close", "--help"}, {"recon", "--help"}, {"statement", "--help"}, {"resolve-statement", "-h"},
		{"backup", "--help"}, {"backup", "x", "--help"}} {
		if code, _, errs := ctl(args...); code != 0 || !strings.Contains(errs, "usage: ledgerctl ") {
			t.Errorf("%q: exit %d, want 0\n%s", args, code, errs)
		}
	}
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"channels", "x"}, `unexpected arguments ["x"]`},
		{[]string{"channel"}, "want degrade or restore"},
		{[]string{"channel", "off", "demo"}, "want degrade or restore"},
		{[]string{"channel", "degrade"}, "want one channel name"},
		{[]string{"channel", "degrade", "a", "b"}, "want one channel name"},
		{[]string{"orders"}, "give order ids or --biz-id"},
		{[]string{"orders", "1", "--biz-id", "b"}, "not both"},
		{[]string{"orders", "x"}, `"x" is not an order id`},
		{[]string{"orders", "0"}, `"0" is not an order id`},
		{[]string{"orders", "--biz-id", "b", "--limit", "0"}, "--limit must be 1 to 1000"},
		{[]string{"exceptions", "--limit", "1001"}, "--limit must be 1 to 1000"},
		{[]string{"exceptions", "--after", "x"}, "invalid value"},
		{[]string{"resolve", "1", "0"}, "want ORDER INDEX refund|close"},
		{[]string{"resolve", "x", "0", "close"}, `"x" is not an order id`},
		{[]string{"resolve", "1", "-1", "close"}, "flag provided but not defined: -1"},
		{[]string{"resolve", "1", "x", "close"}, `"x" is not an exception index`},
		{[]string{"resolve", "1", "0", "void"}, `resolution "void": want refund or close`},
		{[]string{"resolve", "--note"}, "flag needs an argument"},
		{[]string{"orders", "--", "--biz-id"}, `"--biz-id" is not an order id`}, // "--" ends the flags
		{[]string{"recon"}, "--biz-id is required"},
		{[]string{"statement", "--date", "2026-11-26"}, "--channel is required"},
		{[]string{"statement", "--channel", "demo"}, "--date is required"},
		{[]string{"statement", "--channel", "demo", "--date", "26/11/2026"}, "is not YYYY-MM-DD"},
		{[]string{"statement", "--channel", "demo", "--date", "2026-11-26", "x"}, `unexpected arguments ["x"]`},
		{[]string{"resolve-statement", "demo", "2026-11-26", "T1"}, "want CHANNEL DATE TXN close|reverse"},
		{[]string{"resolve-statement", "demo", "2026-11-26", "T1", "refund"}, `resolution "refund": want close or reverse`},
		{[]string{"recon", "--biz-id", "b", "x"}, `unexpected arguments ["x"]`},
		{[]string{"backup"}, "want one NAME, not 0 arguments"},
		{[]string{"backup", "a", "b", "--verify"}, "want one NAME, not 2 arguments"},
	} {
		if code, out, errs := ctl(c.args...); code != 2 || out != "" || !strings.Contains(errs, c.err) {
			t.Errorf("%q: exit %d, want 2 and %q\n%s%s", c.args, code, c.err, out, errs)
		}
	}
	if code, _, errs := ctl("channels", "--addr", "127.0.0.1:1", "--timeout", "2s"); code != 2 || !strings.Contains(errs, "channels: Unavailable") {
		t.Errorf("unreachable ledgerd: exit %d\n%s", code, errs)
	}
	if code, _, errs := ctl("recon", "--biz-id", "b", "--addr", "127.0.0.1:1", "--timeout", "2s"); code != 2 || !strings.Contains(errs, "recon: Unavailable") {
		t.Errorf("recon, unreachable ledgerd: exit %d\n%s", code, errs)
	}
}
