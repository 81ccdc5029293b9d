// Package rules is the chart of accounts (会计科目) and the transaction codes (交易码) that
// drive postings: each business scene has a code, and the code's template (configuration, not
// code) says which subjects are debited and credited with which amounts. A new payment scene is
// a new template. The rules are read from a YAML file, validated whole, and every error names
// the file, the line and the field.
//
// An account's ledger.Account.Code names its subject; accounts hang under leaf subjects.
package rules

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Category is a subject's kind of balance.
type Category uint8

const (
	Asset Category = 1 + iota
	Liability
	Equity
	Income
	Expense
)

var categoryNames = map[string]Category{"asset": Asset, "liability": Liability, "equity": Equity,
	"income": Income, "expense": Expense}

func (c Category) String() string {
	for name, x := range categoryNames {
		if x == c {
			return name
		}
	}
	return fmt.Sprintf("category(%d)", uint8(c))
}

// ParseCategory is the category named name (as String prints it), and whether there is one.
func ParseCategory(name string) (Category, bool) {
	c, ok := categoryNames[name]
	return c, ok
}

// Side is a side of a posting or of a balance.
type Side uint8

const (
	Debit Side = 1 + iota
	Credit
)

func (s Side) String() string {
	switch s {
	case Debit:
		return "debit"
	case Credit:
		return "credit"
	}
	return fmt.Sprintf("side(%d)", uint8(s))
}

// NormalSide is the side a category's balance normally stands on: assets and expenses are
// debit balances; liabilities, equity and income credit balances.
func (c Category) NormalSide() Side {
	if c == Asset || c == Expense {
		return Debit
	}
	return Credit
}

// Owner says whose accounts hang under a subject.
type Owner uint8

const (
	// Party: customers' and merchants' accounts, named by each request.
	Party Owner = iota
	// Platform: one account of the platform per ledger (currency).
	Platform
	// PerChannel: one account of the platform per ledger and payment channel.
	PerChannel
)

var ownerNames = map[string]Owner{"party": Party, "platform": Platform, "channel": PerChannel}

func (o Owner) String() string {
	for name, x := range ownerNames {
		if x == o {
			return name
		}
	}
	return fmt.Sprintf("owner(%d)", uint8(o))
}

// Subject is a node of the chart.
type Subject struct {
	Code     uint32
	Name     string
	Category Category
	Owner    Owner
	Parent   uint32 // 0: a root
	Children []uint32
}

// Leaf reports whether accounts may hang under the subject.
func (s *Subject) Leaf() bool { return len(s.Children) == 0 }

// Entry is one line of a template: a side, a subject, and the name of the amount it moves.
type Entry struct {
	Side    Side
	Subject uint32
	Amount  string
}

// Code is a transaction code and its posting template. ID is the number ledger transfers carry
// in their code field.
type Code struct {
	Code    string
	ID      uint32
	Name    string
	Entries []Entry
}

// Chart is the chart of accounts and the transaction codes, validated.
type Chart struct {
	Subjects map[uint32]*Subject
	Codes    map[string]*Code
}

// SubjectCodes are the subjects' codes in order.
func (c *Chart) SubjectCodes() []uint32 { return slices.Sorted(maps.Keys(c.Subjects)) }

// CodeNames are the transaction codes in order.
func (c *Chart) CodeNames() []string { return slices.Sorted(maps.Keys(c.Codes)) }

// Error is what is wrong with a rules file, at a line and field.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg) }

// The file's shape, with each node kept for its line.
type file struct {
	Subjects []subjectNode `yaml:"subjects"`
	Codes    []codeNode    `yaml:"transaction_codes"`
}

type subjectNode struct {
	Code     yaml.Node `yaml:"code"`
	Name     yaml.Node `yaml:"name"`
	Category yaml.Node `yaml:"category"`
	Parent   yaml.Node `yaml:"parent"`
	Owner    yaml.Node `yaml:"owner"`
	line     int
}

type codeNode struct {
	Code    yaml.Node   `yaml:"code"`
	ID      yaml.Node   `yaml:"id"`
	Name    yaml.Node   `yaml:"name"`
	Entries []entryNode `yaml:"entries"`
	line    int
}

type entryNode struct {
	Side    yaml.Node `yaml:"side"`
	Subject yaml.Node `yaml:"subject"`
	Amount  yaml.Node `yaml:"amount"`
	line    int
}

func (n *subjectNode) UnmarshalYAML(v *yaml.Node) error {
	type plain subjectNode
	n.line = v.Line
	return strict(v, "subject", (*plain)(n))
}

func (n *codeNode) UnmarshalYAML(v *yaml.Node) error {
	type plain codeNode
	n.line = v.Line
	return strict(v, "transaction code", (*plain)(n))
}

func (n *entryNode) UnmarshalYAML(v *yaml.Node) error {
	type plain entryNode
	n.line = v.Line
	return strict(v, "entry", (*plain)(n))
}

// strict decodes a mapping, refusing keys the shape does not know (a typo must not be ignored).
func strict(v *yaml.Node, what string, into any) error {
	if v.Kind != yaml.MappingNode {
		return &Error{Line: v.Line, Field: what, Msg: "want a mapping of fields"}
	}
	known := map[string]bool{}
	switch what {
	case "subject":
		known = map[string]bool{"code": true, "name": true, "category": true, "parent": true, "owner": true}
	case "transaction code":
		known = map[string]bool{"code": true, "id": true, "name": true, "entries": true}
	case "entry":
		known = map[string]bool{"side": true, "subject": true, "amount": true}
	}
	for i := 0; i < len(v.Content); i += 2 {
		if k := v.Content[i]; !known[k.Value] {
			return &Error{Line: k.Line, Field: k.Value, Msg: fmt.Sprintf("unknown field of a %s", what)}
		}
	}
	return v.Decode(into)
}

var amountName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Load reads and validates rules; name is the file's name, for errors. Every problem found is
// returned (errors.Join), each naming its line and field.
func Load(name string, data []byte) (*Chart, error) {
	var f file
	if err := yaml.Unmarshal(data, &f); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = name
			return nil, e
		}
		return nil, &Error{File: name, Line: yamlLine(err), Field: "file", Msg: err.Error()}
	}
	l := &loader{file: name, chart: &Chart{Subjects: map[uint32]*Subject{}, Codes: map[string]*Code{}}}
	l.subjects(f.Subjects)
	l.codes(f.Codes)
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.chart, nil
}

// yamlLine finds the line in a YAML error ("yaml: line 3: ..."), or 0.
func yamlLine(err error) int {
	var line int
	if _, scan := fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: "), "line %d:", &line); scan == nil {
		return line
	}
	return 0
}

type loader struct {
	file  string
	chart *Chart
	errs  []error
}

func (l *loader) fail(line int, field, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// text reads a required string field.
func (l *loader) text(n *yaml.Node, line int, field string) (string, bool) {
	if n.Kind == 0 {
		l.fail(line, field, "missing")
		return "", false
	}
	if n.Kind != yaml.ScalarNode || strings.TrimSpace(n.Value) == "" {
		l.fail(n.Line, field, "want a non-empty text")
		return "", false
	}
	return n.Value, true
}

// number reads a subject code or a transaction code's id: 1 to 2^32-1.
func (l *loader) number(n *yaml.Node, line int, field string, required bool) (uint32, bool) {
	if n.Kind == 0 {
		if required {
			l.fail(line, field, "missing")
		}
		return 0, !required
	}
	var v uint64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil || v == 0 || v > 1<<32-1 {
		l.fail(n.Line, field, "want a number from 1 to %d, not %q", uint32(1<<32-1), n.Value)
		return 0, false
	}
	return uint32(v), true
}

func (l *loader) subjects(nodes []subjectNode) {
	lines := map[uint32]int{}
	for i := range nodes {
		n := &nodes[i]
		field := fmt.Sprintf("subjects[%d]", i)
		code, okCode := l.number(&n.Code, n.line, field+".code", true)
		name, okName := l.text(&n.Name, n.line, field+".name")
		cat, okCat := l.text(&n.Category, n.line, field+".category")
		parent, okParent := l.number(&n.Parent, n.line, field+".parent", false)
		owner, okOwner := Party, true
		if n.Owner.Kind != 0 {
			var name string
			if name, okOwner = l.text(&n.Owner, n.line, field+".owner"); okOwner {
				if owner, okOwner = ownerNames[name]; !okOwner {
					l.fail(n.Owner.Line, field+".owner", "unknown owner %q (want party, platform or channel)", name)
				}
			}
		}
		category, known := categoryNames[cat]
		if okCat && !known {
			l.fail(n.Category.Line, field+".category", "unknown category %q (want asset, liability, equity, income or expense)", cat)
		}
		if !okCode || !okName || !okCat || !known || !okParent || !okOwner {
			continue
		}
		if first, dup := lines[code]; dup {
			l.fail(n.Code.Line, field+".code", "duplicate subject %d (first at line %d)", code, first)
			continue
		}
		lines[code] = n.Code.Line
		l.chart.Subjects[code] = &Subject{Code: code, Name: name, Category: category, Owner: owner, Parent: parent}
	}
	for i := range nodes {
		n := &nodes[i]
		var code uint32
		if n.Code.Decode(&code) != nil {
			continue
		}
		s := l.chart.Subjects[code]
		if s == nil || s.Parent == 0 || lines[code] != n.Code.Line {
			continue
		}
		field := fmt.Sprintf("subjects[%d].parent", i)
		p, ok := l.chart.Subjects[s.Parent]
		switch {
		case !ok:
			l.fail(n.Parent.Line, field, "unknown subject %d", s.Parent)
		case p.Category != s.Category:
			l.fail(n.Parent.Line, field, "subject %d is %v under %d, which is %v", code, s.Category, p.Code, p.Category)
		default:
			p.Children = append(p.Children, code)
		}
	}
	for _, code := range l.chart.SubjectCodes() {
		s := l.chart.Subjects[code]
		seen := map[uint32]bool{code: true}
		for p := s.Parent; p != 0; p = l.chart.Subjects[p].Parent {
			if seen[p] {
				l.fail(lines[code], fmt.Sprintf("subject %d", code), "its parents loop back to it")
				break
			}
			seen[p] = true
			if l.chart.Subjects[p] == nil {
				break
			}
		}
		slices.Sort(s.Children)
	}
}

func (l *loader) codes(nodes []codeNode) {
	lines := map[string]int{}
	ids := map[uint32]int{}
	for i := range nodes {
		n := &nodes[i]
		field := fmt.Sprintf("transaction_codes[%d]", i)
		code, okCode := l.text(&n.Code, n.line, field+".code")
		name, okName := l.text(&n.Name, n.line, field+".name")
		id, okID := l.number(&n.ID, n.line, field+".id", true)
		if !okCode || !okName || !okID {
			continue
		}
		if first, dup := ids[id]; dup {
			l.fail(n.ID.Line, field+".id", "duplicate transaction code id %d (first at line %d)", id, first)
			continue
		}
		ids[id] = n.ID.Line
		if first, dup := lines[code]; dup {
			l.fail(n.Code.Line, field+".code", "duplicate transaction code %q (first at line %d)", code, first)
			continue
		}
		lines[code] = n.Code.Line
		c := &Code{Code: code, ID: id, Name: name}
		ok := len(n.Entries) > 0
		if !ok {
			l.fail(n.line, field+".entries", "a template needs entries")
		}
		for k := range n.Entries {
			e, good := l.entry(&n.Entries[k], fmt.Sprintf("%s.entries[%d]", field, k))
			ok = ok && good
			c.Entries = append(c.Entries, e)
		}
		if ok && l.balanced(c, n, field) {
			l.chart.Codes[code] = c
		}
	}
}

func (l *loader) entry(n *entryNode, field string) (Entry, bool) {
	var e Entry
	side, okSide := l.text(&n.Side, n.line, field+".side")
	switch {
	case !okSide:
	case side == "debit":
		e.Side = Debit
	case side == "credit":
		e.Side = Credit
	default:
		l.fail(n.Side.Line, field+".side", "want debit or credit, not %q", side)
		okSide = false
	}
	subject, okSubject := l.number(&n.Subject, n.line, field+".subject", true)
	if okSubject {
		s, known := l.chart.Subjects[subject]
		switch {
		case !known:
			l.fail(n.Subject.Line, field+".subject", "unknown subject %d", subject)
			okSubject = false
		case !s.Leaf():
			l.fail(n.Subject.Line, field+".subject", "subject %d (%s) has subjects under it: postings go to leaf subjects", subject, s.Name)
			okSubject = false
		}
	}
	amount, okAmount := l.text(&n.Amount, n.line, field+".amount")
	if okAmount && !amountName.MatchString(amount) {
		l.fail(n.Amount.Line, field+".amount", "want an amount's name (lower case letters, digits and _), not %q", amount)
		okAmount = false
	}
	e.Subject, e.Amount = subject, amount
	return e, okSide && okSubject && okAmount
}

// balanced checks that, for each amount a template names, its debits and credits match: every
// posting the template makes has both sides.
func (l *loader) balanced(c *Code, n *codeNode, field string) bool {
	sums := map[string]int{}
	for _, e := range c.Entries {
		if e.Side == Debit {
			sums[e.Amount]++
		} else {
			sums[e.Amount]--
		}
	}
	names := make([]string, 0, len(sums))
	for name, d := range sums {
		if d != 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return true
	}
	slices.Sort(names)
	for _, name := range names {
		l.fail(n.line, field+".entries", "unbalanced: amount %q is debited %+d times more than credited", name, sums[name])
	}
	return false
}

// Pair is one transfer a template makes: from an account under the debit subject to one under
// the credit subject, of the named amount.
type Pair struct {
	Debit, Credit uint32
	Amount        string
}

// Pairs are the transfers of a template: for each amount, its i-th debit entry with its i-th
// credit entry, in the order of the debits.
func (c *Code) Pairs() []Pair {
	credits := map[string][]uint32{}
	for _, e := range c.Entries {
		if e.Side == Credit {
			credits[e.Amount] = append(credits[e.Amount], e.Subject)
		}
	}
	var out []Pair
	for _, e := range c.Entries {
		if e.Side == Debit {
			cr := credits[e.Amount]
			out = append(out, Pair{Debit: e.Subject, Credit: cr[0], Amount: e.Amount})
			credits[e.Amount] = cr[1:]
		}
	}
	return out
}
