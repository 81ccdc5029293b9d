package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// TestVerifyExitCodes: 0 on a clean store, 1 when a balance disagrees with its journal,
// 2 when it cannot run.
func TestVerifyExitCodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := storage.Open(dir, storage.Options{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := ledger.NewBook(0, 1)
	var fx ledger.Effects
	b.CreateAccounts(1, []ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}},
		make([]ledger.AccountResult, 2), &fx)
	b.CreateTransfers(2, []ledger.Transfer{{ID: 9, DebitAccountID: 1, CreditAccountID: 2, Amount: 3, Ledger: 1, Code: 1}},
		make([]ledger.TransferResult, 1), &fx)
	fx.Freeze()
	w := s.Writer(0)
	if err := w.Commit(&fx, b.Clock()); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	_ = s.Close()

	before := files(t, dir)
	var out, errs bytes.Buffer
	if code := run([]string{"verify", "--data-dir", dir}, &out, &errs); code != 0 || !strings.Contains(out.String(), "0 problems") {
		t.Fatalf("clean store: exit %d\n%s%s", code, out.String(), errs.String())
	}
	if after := files(t, dir); after != before {
		t.Fatalf("verify changed the store's files:\n%s\nthen\n%s", before, after)
	}

	s, err = storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fx.Reset()
	a, _ := b.Account(1)
	after := a.Balance
	after.DebitsPosted, _ = after.DebitsPosted.Add64(100) // a balance no movement explains
	fx.Postings = append(fx.Postings, ledger.Posting{Account: 1, Timestamp: b.Clock() + 1, TransferID: 9,
		Op: ledger.OpDebitPost, Amount: 1, After: after})
	fx.Freeze()
	w = s.Writer(0)
	if err := w.Commit(&fx, b.Clock()+1); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	_ = s.Close()
	out.Reset()
	if code := run([]string{"verify", "--data-dir", dir}, &out, &errs); code != 1 || !strings.Contains(out.String(), "account 1") {
		t.Fatalf("tampered store: exit %d\n%s", code, out.String())
	}

	for _, args := range [][]string{{}, {"verify"}, {"verify", "--data-dir", dir, "--addr", "x:1"},
		{"verify", "--data-dir", filepath.Join(dir, "missing")}} {
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// files lists a directory's files with their sizes and times (but Pebble's LOCK, which any
// open takes).
func files(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %v\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}

// TestLookups: accounts, transfers and history against a running server, and the exit codes
// for missing ids and bad arguments.
func TestLookups(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := actors.Start(store, actors.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	srv, _ := api.NewServer(api.NewService(l, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTransfers([]ledger.Transfer{{ID: 7, DebitAccountID: 1, CreditAccountID: 2, Amount: 5,
		Ledger: 1, Code: 1, BizID: "order-7"}}); err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	var out, errs bytes.Buffer
	if code := run([]string{"accounts", "--addr", addr, "1", "2"}, &out, &errs); code != 0 ||
		!strings.Contains(out.String(), `"debitsPosted":"5"`) || !strings.Contains(out.String(), `"creditsPosted":"5"`) {
		t.Errorf("accounts: exit %d\n%s%s", code, out.String(), errs.String())
	}
	out.Reset()
	if code := run([]string{"transfers", "--addr", addr, "7"}, &out, &errs); code != 0 || !strings.Contains(out.String(), `"bizId":"order-7"`) {
		t.Errorf("transfers: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"history", "--addr", addr, "2"}, &out, &errs); code != 0 || !strings.Contains(out.String(), `"id":"7"`) {
		t.Errorf("history: exit %d\n%s", code, out.String())
	}
	// Flags after the arguments, or between them.
	for _, args := range [][]string{{"accounts", "1", "2", "--addr", addr}, {"accounts", "1", "--addr", addr, "2"},
		{"history", "2", "--addr", addr, "--limit", "5", "--reversed"}, {"transfers", "7", "--addr=" + addr}} {
		out.Reset()
		if code := run(args, &out, &errs); code != 0 || !strings.Contains(out.String(), `"id":"`) {
			t.Errorf("%q: exit %d\n%s%s", args, code, out.String(), errs.String())
		}
	}
	if code := run([]string{"transfers", "--addr", addr, "7", "8"}, &out, &errs); code != 1 {
		t.Errorf("a missing transfer: exit %d, want 1", code)
	}
	for _, args := range [][]string{{"accounts", "--addr", addr}, {"accounts", "--addr", addr, "x"},
		{"history", "--addr", addr, "1", "2"}, {"bogus"}} {
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// TestChart: the default chart prints as a tree with its codes; a bad rules file is refused
// with its line and field, exit status 1.
func TestChart(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"chart"}, &out, &errs); code != 0 || !strings.Contains(out.String(), "  2003   withdraw in transit") ||
		!strings.Contains(out.String(), "DR 2001 user balance / CR 2003 withdraw in transit (amount)") {
		t.Fatalf("chart: exit %d\n%s%s", code, out.String(), errs.String())
	}
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(bad, []byte("subjects:\n  - {code: 1, name: a, category: asset}\ntransaction_codes:\n"+
		"  - {code: x, id: 1, name: x, entries: [{side: debit, subject: 1, amount: a}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"chart", "--rules", bad}, &out, &errs); code != 1 ||
		!strings.Contains(errs.String(), "rules.yaml:4: transaction_codes[0].entries: unbalanced") {
		t.Fatalf("bad rules: exit %d\n%s", code, errs.String())
	}
}

// TestParseArgs: flags stand anywhere among the positional arguments; "--" ends them.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		positional []string
		code       int
		addr       string
	}{
		{[]string{"1", "2", "--addr", "x:1"}, []string{"1", "2"}, -1, "x:1"},
		{[]string{"--addr", "x:1", "1", "2"}, []string{"1", "2"}, -1, "x:1"},
		{[]string{"1", "--addr=x:1", "2"}, []string{"1", "2"}, -1, "x:1"},
		{[]string{"1", "--", "--addr", "2"}, []string{"1", "--addr", "2"}, -1, "d"},
		{[]string{"1", "--help"}, nil, 0, "d"},
		{[]string{"1", "--bogus"}, nil, 2, "d"},
		{nil, nil, -1, "d"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		addr := fs.String("addr", "d", "")
		positional, code := parseArgs(fs, tc.args)
		if code != tc.code || !slices.Equal(positional, tc.positional) || *addr != tc.addr {
			t.Errorf("%q: %q %d %s, want %q %d %s", tc.args, positional, code, *addr, tc.positional, tc.code, tc.addr)
		}
	}
}

func TestToken(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"token", "writer", "payments-svc"}, &out, &errs); code != 0 {
		t.Fatalf("token: %d %s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "token: lt_") || !strings.HasPrefix(lines[1], "line:  writer payments-svc sha256:") {
		t.Fatalf("token printed %q", out.String())
	}
	tok, line := strings.TrimPrefix(lines[0], "token: "), strings.TrimPrefix(lines[1], "line:  ")
	creds, err := api.ParseCredentials("tokens", []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := creds.Token(tok); !ok || p.Role != api.RoleWriter || p.Name != "payments-svc" {
		t.Errorf("the line does not grant the token: %+v %v", p, ok)
	}

	file := filepath.Join(t.TempDir(), "ops.token")
	out.Reset()
	if code := run([]string{"token", "operator", "ops", "--out", file}, &out, &errs); code != 0 ||
		!strings.HasPrefix(out.String(), "operator ops sha256:") || strings.Contains(out.String(), "lt_") {
		t.Fatalf("token --out: %d %q %s", code, out.String(), errs.String())
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", st, err)
	}
	for _, args := range [][]string{{"token", "admin", "x"}, {"token", "channel", "acme"}, {"token", "reader"},
		{"token", "reader", "x", "--out", file}} {
		errs.Reset()
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d %s", args, code, errs.String())
		}
	}
}
