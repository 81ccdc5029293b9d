package accounting

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testCurrencies are the golden cases' currencies: ledger 1 is CNY (2 decimals), 392 JPY (0)
// and 414 KWD (3); 998 names a code ISO 4217 does not list, and every other ledger (840) has
// none: their amounts print in minor units.
var testCurrencies = Currencies{1: "CNY", 392: "JPY", 414: "KWD", 998: "ABC"}

// TestTrialBalanceGolden runs each testdata/*.accounts case and compares the table and the CSV
// with its .golden file (go test -update rewrites them). A case's lines:
//
//	chart FILE                        the chart (default: the rules that ship with ledgerd)
//	ID LEDGER CODE DP CP DPEND CPEND  an account: debits and credits posted, then pending
//
// Ids may be "transit+N" (ledger.TransitIDMin+N); amounts are decimals up to 2^128-1.
func TestTrialBalanceGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.accounts")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range cases {
		name := strings.TrimSuffix(filepath.Base(file), ".accounts")
		t.Run(name, func(t *testing.T) {
			chart, accounts := readCase(t, file)
			rep := TrialBalance(chart, slices.Values(accounts))
			var got bytes.Buffer
			if err := WriteTable(&got, &rep, testCurrencies); err != nil {
				t.Fatal(err)
			}
			got.WriteString("--- csv\n")
			if err := WriteCSV(&got, &rep, testCurrencies); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".accounts") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs; got:\n%s", golden, got.String())
			}
			// The same accounts in another order give the same report.
			slices.Reverse(accounts)
			again := TrialBalance(chart, slices.Values(accounts))
			var b bytes.Buffer
			_ = WriteTable(&b, &again, testCurrencies)
			b.WriteString("--- csv\n")
			_ = WriteCSV(&b, &again, testCurrencies)
			if !bytes.Equal(b.Bytes(), got.Bytes()) {
				t.Errorf("the report depends on the order of the accounts:\n%s", b.String())
			}
		})
	}
}

func readCase(t *testing.T, file string) (*rules.Chart, []ledger.Account) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chart := rules.Default()
	var accounts []ledger.Account
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "chart" && len(fields) == 2:
			data, err := os.ReadFile(filepath.Join("testdata", fields[1]))
			if err != nil {
				t.Fatal(err)
			}
			if chart, err = rules.Load(fields[1], data); err != nil {
				t.Fatal(err)
			}
		case len(fields) == 7:
			a, err := parseAccount(fields)
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			accounts = append(accounts, a)
		default:
			t.Fatalf("%s:%d: want chart FILE or ID LEDGER CODE DP CP DPEND CPEND", file, n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return chart, accounts
}

func parseAccount(f []string) (ledger.Account, error) {
	var a ledger.Account
	var err error
	if rest, ok := strings.CutPrefix(f[0], "transit+"); ok {
		a.ID, err = strconv.ParseUint(rest, 10, 64)
		a.ID += ledger.TransitIDMin
	} else {
		a.ID, err = strconv.ParseUint(f[0], 10, 64)
	}
	if err != nil {
		return a, err
	}
	l, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return a, err
	}
	code, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return a, err
	}
	a.Ledger, a.Code = uint32(l), uint32(code)
	for i, dst := range []*ledger.Uint128{&a.DebitsPosted, &a.CreditsPosted, &a.DebitsPending, &a.CreditsPending} {
		v, ok := new(big.Int).SetString(f[3+i], 10)
		if !ok || v.Sign() < 0 || v.BitLen() > 128 {
			return a, fmt.Errorf("amount %q", f[3+i])
		}
		lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
		*dst = ledger.Uint128{Hi: new(big.Int).Rsh(v, 64).Uint64(), Lo: lo.Uint64()}
	}
	return a, nil
}

// TestRollUpChecked: a chart whose parent does not list a subject that names it as its parent
// (one not made by rules.Load) rolls the subject's accounts into the parent, and the check
// that the parent is the sum of its children reports it.
func TestRollUpChecked(t *testing.T) {
	chart := &rules.Chart{Subjects: map[uint32]*rules.Subject{
		1: {Code: 1, Name: "assets", Category: rules.Asset, Children: []uint32{2}},
		2: {Code: 2, Name: "cash", Category: rules.Asset, Parent: 1},
		3: {Code: 3, Name: "bank", Category: rules.Asset, Parent: 1},
		9: {Code: 9, Name: "equity", Category: rules.Equity},
	}}
	rep := TrialBalance(chart, slices.Values([]ledger.Account{
		{ID: 1, Ledger: 1, Code: 2, Balance: ledger.Balance{DebitsPosted: ledger.U128(5)}},
		{ID: 2, Ledger: 1, Code: 3, Balance: ledger.Balance{DebitsPosted: ledger.U128(7)}},
		{ID: 3, Ledger: 1, Code: 9, Balance: ledger.Balance{CreditsPosted: ledger.U128(12)}},
	}))
	want := []string{
		"ledger 1: roll-up: subject 1 (assets): posted debits 12, the sum of its children 5",
		"ledger 1: roll-up: subject 1 (assets): accounts 2, the sum of its children 1",
	}
	if rep.Balanced || !slices.Equal(rep.Differences, want) {
		t.Errorf("balanced %v, differences:\n%s\nwant:\n%s", rep.Balanced, strings.Join(rep.Differences, "\n"),
			strings.Join(want, "\n"))
	}
}

// TestOverflow: sums past 2^128 (which no real ledger reaches) are reported, not wrapped.
func TestOverflow(t *testing.T) {
	max := ledger.Uint128{Hi: ^uint64(0), Lo: ^uint64(0)}
	rep := TrialBalance(rules.Default(), slices.Values([]ledger.Account{
		{ID: 1, Ledger: 1, Code: 2001, Balance: ledger.Balance{DebitsPosted: max, CreditsPosted: max}},
		{ID: 2, Ledger: 1, Code: 2001, Balance: ledger.Balance{DebitsPosted: ledger.U128(1), CreditsPosted: ledger.U128(1)}},
	}))
	want := []string{
		"ledger 1: overflow: subject 2000 passes 2^128",
		"ledger 1: overflow: subject 2001 passes 2^128",
		"ledger 1: overflow: the ledger's total passes 2^128",
	}
	if rep.Balanced || !slices.Equal(rep.Differences, want) {
		t.Errorf("balanced %v, differences %q", rep.Balanced, rep.Differences)
	}
}

// TestManyUnclassified: accounts of a code outside the chart make one line and one difference
// per code, however many they are (a load test's accounts must not make the report huge).
func TestManyUnclassified(t *testing.T) {
	var accounts []ledger.Account
	for id := uint64(100_000); id > 0; id-- {
		accounts = append(accounts, ledger.Account{ID: id, Ledger: 1, Code: 1,
			Balance: ledger.Balance{CreditsPosted: ledger.U128(1)}})
	}
	accounts = append(accounts, ledger.Account{ID: 1 << 40, Ledger: 1, Code: 1122,
		Balance: ledger.Balance{DebitsPosted: ledger.U128(100_000)}})
	rep := TrialBalance(rules.Default(), slices.Values(accounts))
	l := rep.Ledgers[0]
	if !rep.Balanced || len(rep.Differences) != 1 || len(l.Unclassified) != 1 {
		t.Fatalf("balanced %v, %d differences, %d unclassified lines", rep.Balanced, len(rep.Differences), len(l.Unclassified))
	}
	if u := l.Unclassified[0]; u.Accounts != 100_000 || u.Account != 1 || u.CreditsPosted != ledger.U128(100_000) ||
		u.Name != "unclassified code 1: 100000 accounts (1, 2, 3, ...)" {
		t.Fatalf("unclassified line %+v", u)
	}
}

// TestOddCharts: a chart not made by rules.Load (a parent loop) does not hang the report.
func TestOddCharts(t *testing.T) {
	c := &rules.Chart{Subjects: map[uint32]*rules.Subject{
		1: {Code: 1, Name: "a", Category: rules.Asset, Parent: 2, Children: []uint32{2}},
		2: {Code: 2, Name: "b", Category: rules.Asset, Parent: 1, Children: []uint32{1}},
		3: {Code: 3, Name: "leaf", Category: rules.Asset, Parent: 3}}, Codes: map[string]*rules.Code{}}
	done := make(chan Report)
	go func() {
		done <- TrialBalance(c, slices.Values([]ledger.Account{{ID: 1, Ledger: 1, Code: 3}}))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a looping chart hangs the trial balance")
	}
}

// TestCSVCells: names that a spreadsheet would read as a formula, or that carry control
// characters, are written as text.
func TestCSVCells(t *testing.T) {
	c := &rules.Chart{Subjects: map[uint32]*rules.Subject{
		1: {Code: 1, Name: "=HYPERLINK(\"x\")", Category: rules.Asset},
		2: {Code: 2, Name: "tab\there", Category: rules.Liability}}, Codes: map[string]*rules.Code{}}
	rep := TrialBalance(c, slices.Values([]ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 2}}))
	var out bytes.Buffer
	if err := WriteCSV(&out, &rep, nil); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `'=HYPERLINK(""x"")`) || !strings.Contains(s, ",tab here,") {
		t.Fatalf("cells:\n%s", s)
	}
}
