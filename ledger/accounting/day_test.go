package accounting

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

// TestDayTrialBalanceGolden runs each testdata/*.day case and compares the day's table with
// its .day.golden file (go test -update rewrites them). A case's lines:
//
//	day YYYY-MM-DD
//	account ID LEDGER CODE         starts an account (ID may be transit+N)
//	open DP CP DPEND CPEND         its opening balance (default zero)
//	post OP AMOUNT [HELD] [split]  a posting of the day (OP: a ledger.PostingOp number); a split
//	                               one's mirror goes to transit+1 of the same ledger
//	close DP CP DPEND CPEND        its closing balance (default: opening moved by its postings)
//
// transit+1's closing defaults to what the mirrors moved; every account of a case lives on
// shard 0.
func TestDayTrialBalanceGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.day")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range cases {
		t.Run(filepath.Base(file), func(t *testing.T) {
			day, accounts := readDayCase(t, file)
			render := func(order []*dayAccount) []byte {
				b := NewDayBuilder(rules.Default(), day)
				for _, a := range order {
					b.Add(a.Account, a.open, &a.moved)
				}
				r := b.Report()
				var out bytes.Buffer
				if err := WriteDayTable(&out, &r, testCurrencies); err != nil {
					t.Fatal(err)
				}
				return out.Bytes()
			}
			got := render(accounts)
			golden := file + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs; got:\n%s", golden, got)
			}
			slices.Reverse(accounts)
			if again := render(accounts); !bytes.Equal(again, got) {
				t.Errorf("the report depends on the order of the accounts:\n%s", again)
			}
		})
	}
}

type dayAccount struct {
	ledger.Account
	open   ledger.Balance
	moved  ledger.Movement
	closed bool
}

func readDayCase(t *testing.T, file string) (ledger.Day, []*dayAccount) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var day ledger.Day
	var out []*dayAccount
	transit := map[uint32]*dayAccount{}
	var cur *dayAccount
	balance := func(n int, fields []string) ledger.Balance {
		a, err := parseAccount(append([]string{"1", "1", "1"}, fields...))
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n, err)
		}
		return a.Balance
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "day" && len(fields) == 2:
			if day, err = ledger.ParseDay(fields[1]); err != nil {
				t.Fatal(err)
			}
		case fields[0] == "account" && len(fields) == 4:
			a, err := parseAccount(append(fields[1:], "0", "0", "0", "0"))
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			cur = &dayAccount{Account: a}
			out = append(out, cur)
			if a.ID >= ledger.TransitIDMin {
				transit[a.Ledger] = cur
			}
		case fields[0] == "open" && len(fields) == 5 && cur != nil:
			cur.open = balance(n, fields[1:])
		case fields[0] == "close" && len(fields) == 5 && cur != nil:
			cur.Balance, cur.closed = balance(n, fields[1:]), true
		case fields[0] == "post" && len(fields) >= 3 && cur != nil:
			op, err1 := strconv.ParseUint(fields[1], 10, 8)
			amount, err2 := strconv.ParseUint(fields[2], 10, 64)
			p := ledger.Posting{Op: ledger.PostingOp(op), Amount: amount}
			rest := fields[3:]
			if len(rest) > 0 && rest[len(rest)-1] == "split" {
				p.Split, rest = true, rest[:len(rest)-1]
			}
			if len(rest) == 1 {
				p.Held, err = strconv.ParseUint(rest[0], 10, 64)
			}
			if err1 != nil || err2 != nil || err != nil || !cur.moved.Add(&p) {
				t.Fatalf("%s:%d: bad posting", file, n)
			}
			if p.Split {
				tr := transit[cur.Ledger]
				if tr == nil {
					t.Fatalf("%s:%d: a split posting before its ledger's transit account", file, n)
				}
				tr.moved.AddMirror(&p)
			}
		default:
			t.Fatalf("%s:%d: bad line", file, n)
		}
	}
	for _, a := range out {
		if !a.closed {
			b, ok := a.moved.Forward(a.open)
			if !ok {
				t.Fatalf("%s: account %d: movements do not fit its opening", file, a.ID)
			}
			a.Balance = b
		}
	}
	return day, out
}
