package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

const trialRules = `subjects:
  - {code: 1, name: assets, category: asset}
  - {code: 11, name: bank, category: asset, parent: 1}
  - {code: 2, name: liabilities, category: liability}
  - {code: 21, name: customers, category: liability, parent: 2}
`

// TestTrialBalanceCommand: trial-balance against a running server with its own chart prints the
// subjects as a tree and "balanced" (exit 0), writes CSV, lists the differences (exit 3, or 1
// with --strict), and
// exits 2 when it cannot run.
func TestTrialBalanceCommand(t *testing.T) {
	chart, err := rules.Load("trial.yaml", []byte(trialRules))
	if err != nil {
		t.Fatal(err)
	}
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
	svc := api.NewService(l, nil, api.WithChart(chart), api.WithCurrencies(accounting.Currencies{1: "CNY"}))
	srv, _ := api.NewServer(svc)
	ledgerv1.RegisterAdminServiceServer(srv, svc) // tests serve both on one server
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 11}, {ID: 2, Ledger: 1, Code: 21}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTransfers([]ledger.Transfer{{ID: 7, DebitAccountID: 1, CreditAccountID: 2, Amount: 1234,
		Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	var out, errs bytes.Buffer
	if code := run([]string{"trial-balance", "--addr", addr}, &out, &errs); code != 0 ||
		!strings.HasPrefix(out.String(), "ledger 1, amounts in CNY\n") ||
		!strings.Contains(out.String(), "\n  11     bank         asset      debit           12.34            0.00") ||
		!strings.Contains(out.String(), "\n2        liabilities  liability  credit           0.00           12.34") ||
		!strings.HasSuffix(out.String(), "\nbalanced\n") {
		t.Errorf("table: exit %d\n%s%s", code, out.String(), errs.String())
	}
	out.Reset()
	if code := run([]string{"trial-balance", "--addr", addr, "--csv"}, &out, &errs); code != 0 ||
		!strings.HasPrefix(out.String(), "ledger,currency,row,depth,leaf,subject,name,category,side,debits_posted,credits_posted,debits_pending,credits_pending,balance,accounts,first_account\n"+
			"1,CNY,subject,0,false,1,assets,asset,debit,12.34,0.00,0.00,0.00,12.34,1,\n") ||
		!strings.Contains(out.String(), "\n1,CNY,total,0,,,total,,debit,12.34,12.34,0.00,0.00,0.00,2,\n") {
		t.Errorf("csv: exit %d\n%s%s", code, out.String(), errs.String())
	}

	// An account under a parent subject: a difference, exit 3 (1 with --strict); the other
	// ledger is clean.
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 3, Ledger: 1, Code: 2}, {ID: 4, Ledger: 2, Code: 11},
		{ID: 5, Ledger: 2, Code: 21}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTransfers([]ledger.Transfer{{ID: 8, DebitAccountID: 1, CreditAccountID: 3, Amount: 6, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"trial-balance", "--addr", addr}, &out, &errs); code != 3 ||
		!strings.Contains(out.String(), "ledger 1: unclassified: 1 accounts (from 3): code 2 names subject 2 (liabilities), which has subjects under it") ||
		!strings.Contains(out.String(), "\nledger 2, amounts in minor units (no currency known)\n") || !strings.HasSuffix(out.String(), "\nbalanced, with differences\n") {
		t.Errorf("differences: exit %d\n%s%s", code, out.String(), errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"trial-balance", "--addr", addr, "--csv", "--strict"}, &out, &errs); code != 1 ||
		!strings.Contains(out.String(), "\n1,CNY,unclassified,0,,2,unclassified code 2: 1 accounts (3),,debit,0.00,0.06,0.00,0.00,-0.06,1,3\n") ||
		!strings.Contains(out.String(), "\n2,,total,0,,,total,,debit,0,0,0,0,0,2,\n") ||
		!strings.Contains(errs.String(), "ledger 1: unclassified: 1 accounts (from 3)") {
		t.Errorf("csv differences: exit %d\n%s%s", code, out.String(), errs.String())
	}
	out.Reset()
	if code := run([]string{"trial-balance", "--addr", addr, "--ledger", "2"}, &out, &errs); code != 0 ||
		strings.Contains(out.String(), "ledger 1") || !strings.HasSuffix(out.String(), "\nbalanced\n") {
		t.Errorf("ledger 2: exit %d\n%s%s", code, out.String(), errs.String())
	}

	if code := run([]string{"trial-balance", "--help"}, &out, &errs); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, args := range [][]string{{"trial-balance", "--addr", addr, "extra"}, {"trial-balance", "--bogus"},
		{"trial-balance", "--addr", addr, "--ledger", "4294967296"}} {
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	if code := run([]string{"trial-balance", "--addr", deadAddr, "--timeout", "5s"}, &out, &errs); code != 2 {
		t.Errorf("no server: exit %d, want 2", code)
	}
}
