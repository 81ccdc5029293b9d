package rules

import (
	"strings"
	"testing"
)

func TestDefaultChart(t *testing.T) {
	c := Default()
	if len(c.Subjects) == 0 || len(c.Codes) == 0 {
		t.Fatalf("empty default chart: %d subjects, %d codes", len(c.Subjects), len(c.Codes))
	}
	for _, name := range []string{"user balance", "merchant balance", "channel receivable", "withdraw in transit",
		"suspense", "coupon liability", "fee income"} {
		found := false
		for _, s := range c.Subjects {
			found = found || s.Name == name && s.Leaf()
		}
		if !found {
			t.Errorf("the default chart has no leaf subject %q", name)
		}
	}
	withdraw := c.Codes["withdraw_hold"].Pairs()
	if len(withdraw) != 1 || withdraw[0] != (Pair{Debit: 2001, Credit: 2003, Amount: "amount"}) {
		t.Errorf("withdraw_hold: %+v, want DR user balance / CR withdraw in transit", withdraw)
	}
	if Asset.NormalSide() != Debit || Liability.NormalSide() != Credit || Income.NormalSide() != Credit ||
		Expense.NormalSide() != Debit || Equity.NormalSide() != Credit {
		t.Error("normal balance sides")
	}
}

// TestBadRules: every mistake is refused with the file, line and field, all at once.
func TestBadRules(t *testing.T) {
	const subjects = `subjects:
  - {code: 1000, name: assets, category: asset}
  - {code: 1122, name: receivable, category: asset, parent: 1000}
  - {code: 2001, name: balance, category: liability}
`
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"ids and owners", `subjects:
  - {code: 1000, name: assets, category: asset, owner: bank}
  - {code: 2001, name: balance, category: liability}
transaction_codes:
  - {code: x, id: 5, name: x, entries: [{side: debit, subject: 2001, amount: a}, {side: credit, subject: 2001, amount: a}]}
  - {code: y, id: 5, name: y, entries: [{side: debit, subject: 2001, amount: a}, {side: credit, subject: 2001, amount: a}]}
  - {code: z, name: z, entries: [{side: debit, subject: 2001, amount: a}, {side: credit, subject: 2001, amount: a}]}
`, []string{`r.yaml:2: subjects[0].owner: unknown owner "bank" (want party, platform or channel)`,
			"r.yaml:6: transaction_codes[1].id: duplicate transaction code id 5 (first at line 5)",
			"r.yaml:7: transaction_codes[2].id: missing"}},
		{"unknown subject", subjects + `transaction_codes:
  - code: x
    id: 901
    name: x
    entries:
      - {side: debit, subject: 9999, amount: amount}
      - {side: credit, subject: 2001, amount: amount}
`, []string{"r.yaml:10: transaction_codes[0].entries[0].subject: unknown subject 9999"}},
		{"unbalanced", subjects + `transaction_codes:
  - code: x
    id: 902
    name: x
    entries:
      - {side: debit, subject: 1122, amount: amount}
      - {side: credit, subject: 2001, amount: fee}
`, []string{`r.yaml:6: transaction_codes[0].entries: unbalanced: amount "amount" is debited +1 times`,
			`r.yaml:6: transaction_codes[0].entries: unbalanced: amount "fee" is debited -1 times`}},
		{"duplicate code", subjects + `transaction_codes:
  - {code: x, id: 903, name: x, entries: [{side: debit, subject: 1122, amount: a}, {side: credit, subject: 2001, amount: a}]}
  - {code: x, id: 904, name: y, entries: [{side: debit, subject: 1122, amount: a}, {side: credit, subject: 2001, amount: a}]}
`, []string{`r.yaml:7: transaction_codes[1].code: duplicate transaction code "x" (first at line 6)`}},
		{"subjects", `subjects:
  - {code: 1000, name: assets, category: asset}
  - {code: 1000, name: again, category: asset}
  - {code: 2000, name: x, category: liabilty}
  - {code: 2001, name: x, category: liability, parent: 1000}
  - {code: 2002, name: x, category: liability, parent: 7}
  - {code: 0, name: x, category: asset}
  - {code: 2003, category: asset}
`, []string{"r.yaml:3: subjects[1].code: duplicate subject 1000 (first at line 2)",
			`r.yaml:4: subjects[2].category: unknown category "liabilty"`,
			"r.yaml:5: subjects[3].parent: subject 2001 is liability under 1000, which is asset",
			"r.yaml:6: subjects[4].parent: unknown subject 7",
			`r.yaml:7: subjects[5].code: want a number from 1 to 4294967295, not "0"`,
			"r.yaml:8: subjects[6].name: missing"}},
		{"loop", `subjects:
  - {code: 10, name: a, category: asset, parent: 11}
  - {code: 11, name: b, category: asset, parent: 10}
`, []string{"r.yaml:2: subject 10: its parents loop back to it", "r.yaml:3: subject 11: its parents loop back to it"}},
		{"unknown field", `subjects:
  - {code: 2004, name: x, category: asset, colour: red}
`, []string{"r.yaml:2: colour: unknown field of a subject"}},
		{"not a leaf", subjects + `transaction_codes:
  - {code: x, id: 905, name: x, entries: [{side: debit, subject: 1000, amount: a}, {side: credit, subject: 2001, amount: a}]}
`, []string{"r.yaml:6: transaction_codes[0].entries[0].subject: subject 1000 (assets) has subjects under it"}},
		{"side and amount", subjects + `transaction_codes:
  - {code: x, id: 906, name: x, entries: [{side: left, subject: 1122, amount: a}, {side: credit, subject: 2001, amount: Amount}]}
  - {code: y, id: 907, name: y}
`, []string{`r.yaml:6: transaction_codes[0].entries[0].side: want debit or credit, not "left"`,
			`r.yaml:6: transaction_codes[0].entries[1].amount: want an amount's name`,
			"r.yaml:7: transaction_codes[1].entries: a template needs entries"}},
		{"syntax", "subjects:\n  - {code: 1, name: [\n", []string{"r.yaml:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load("r.yaml", []byte(tc.rules))
			if err == nil {
				t.Fatalf("loaded: %+v", c)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not say %q", err, want)
				}
			}
		})
	}
}

// FuzzLoad: whatever the file, Load returns an error or a chart whose templates all balance;
// it never panics.
func FuzzLoad(f *testing.F) {
	f.Add(defaultRules)
	f.Add([]byte("subjects:\n  - {code: 1, name: a, category: asset}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, name := range c.CodeNames() {
			for _, p := range c.Codes[name].Pairs() {
				if c.Subjects[p.Debit] == nil || c.Subjects[p.Credit] == nil || !c.Subjects[p.Debit].Leaf() {
					t.Fatalf("code %s: pair %+v", name, p)
				}
			}
		}
	})
}
