package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

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

	var out, errs bytes.Buffer
	if code := run([]string{"verify", "--data-dir", dir}, &out, &errs); code != 0 || !strings.Contains(out.String(), "0 problems") {
		t.Fatalf("clean store: exit %d\n%s%s", code, out.String(), errs.String())
	}

	s, err = storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fx.Reset()
	a, _ := b.Account(1)
	after := a.Balance
	after.DebitsPosted += 100 // a balance no movement explains
	fx.Postings = append(fx.Postings, ledger.Posting{Account: 1, Timestamp: b.Clock() + 1, TransferID: 9,
		Op: ledger.OpDebitPost, Amount: 1, After: after})
	fx.Freeze()
	w = s.Writer(0)
	if err := w.Commit(&fx, b.Clock()); err != nil {
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
