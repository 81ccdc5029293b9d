package api

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Option configures a Service.
type Option func(*Service)

// WithChart makes chart the chart of accounts the trial balance sums by (default: the rules
// that ship with the server, rules.Default).
func WithChart(chart *rules.Chart) Option { return func(s *Service) { s.chart = chart } }

// WithCurrencies names the ledgers' currencies (ISO 4217 codes, ledgerd --payment-ledger): the
// trial balance carries each ledger's, and the end of day's table prints its amounts in it. A
// ledger it does not name has no known currency (its amounts print in minor units).
func WithCurrencies(c accounting.Currencies) Option { return func(s *Service) { s.currencies = c } }

// TrialBalance implements AdminService: the trial balance of every account (of req.ledger, or
// all) on a durable snapshot, by the service's chart.
func (s *Service) TrialBalance(ctx context.Context, req *ledgerv1.TrialBalanceRequest) (*ledgerv1.TrialBalanceResponse, error) {
	chart := s.chart
	if chart == nil {
		chart = rules.Default()
	}
	b := accounting.NewBuilder(chart)
	n := 0
	err := s.ledger.Read(func(v *storage.Reader) error {
		return v.ForEachAccount(func(a ledger.Account) error {
			// The scan holds a snapshot (compactions keep what it sees) and Stop waits for
			// it: a caller that gave up stops it.
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if req.GetLedger() == 0 || a.Ledger == req.GetLedger() {
				b.Add(a)
			}
			return nil
		})
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, toStatus(err)
	}
	rep := b.Report()
	if l := req.GetLedger(); l != 0 && len(rep.Ledgers) == 0 {
		return nil, status.Errorf(codes.NotFound, "ledger %d has no accounts", l)
	}
	if !rep.Balanced {
		slog.Error("trial balance: the books do not balance", "differences", len(rep.Differences), "first", rep.Differences[0])
	}
	return TrialBalanceToProto(&rep, s.currencies), nil
}

// TrialBalanceToProto is rep on the wire, each ledger with its currency's ISO 4217 code (empty
// when currencies name none).
func TrialBalanceToProto(rep *accounting.Report, currencies accounting.Currencies) *ledgerv1.TrialBalanceResponse {
	resp := &ledgerv1.TrialBalanceResponse{Balanced: rep.Balanced, Differences: rep.Differences}
	for i := range rep.Ledgers {
		l := &rep.Ledgers[i]
		pl := &ledgerv1.TrialBalanceLedger{Ledger: l.Ledger, Transit: lineToProto(&l.Transit), Total: lineToProto(&l.Total),
			Currency: currencies[l.Ledger]}
		for j := range l.Subjects {
			pl.Subjects = append(pl.Subjects, lineToProto(&l.Subjects[j]))
		}
		for j := range l.Unclassified {
			pl.Unclassified = append(pl.Unclassified, lineToProto(&l.Unclassified[j]))
		}
		resp.Ledgers = append(resp.Ledgers, pl)
	}
	return resp
}

func lineToProto(l *accounting.Line) *ledgerv1.TrialBalanceLine {
	p := &ledgerv1.TrialBalanceLine{Code: l.Code, AccountId: l.Account, Name: l.Name, NormalSide: l.Side.String(),
		Depth: uint32(l.Depth), Leaf: l.Leaf, DebitsPosted: u128ToProto(l.DebitsPosted), CreditsPosted: u128ToProto(l.CreditsPosted),
		DebitsPending: u128ToProto(l.DebitsPending), CreditsPending: u128ToProto(l.CreditsPending),
		Balance: l.Balance.String(), Accounts: l.Accounts}
	if l.Category != 0 {
		p.Category = l.Category.String()
	}
	return p
}

// TrialBalanceCurrencies are the currencies a trial balance on the wire names, by ledger (for
// printing it; a ledger with none is left out).
func TrialBalanceCurrencies(resp *ledgerv1.TrialBalanceResponse) accounting.Currencies {
	out := accounting.Currencies{}
	for _, pl := range resp.GetLedgers() {
		if c := pl.GetCurrency(); c != "" {
			out[pl.GetLedger()] = c
		}
	}
	return out
}

// TrialBalanceFromProto is a trial balance read from the wire (for printing it).
func TrialBalanceFromProto(resp *ledgerv1.TrialBalanceResponse) (accounting.Report, error) {
	rep := accounting.Report{Balanced: resp.GetBalanced(), Differences: resp.GetDifferences()}
	for _, pl := range resp.GetLedgers() {
		l := accounting.Ledger{Ledger: pl.GetLedger()}
		var err error
		if l.Transit, err = lineFromProto(pl.GetTransit()); err != nil {
			return rep, err
		}
		if l.Total, err = lineFromProto(pl.GetTotal()); err != nil {
			return rep, err
		}
		for _, p := range pl.GetSubjects() {
			line, err := lineFromProto(p)
			if err != nil {
				return rep, err
			}
			l.Subjects = append(l.Subjects, line)
		}
		for _, p := range pl.GetUnclassified() {
			line, err := lineFromProto(p)
			if err != nil {
				return rep, err
			}
			l.Unclassified = append(l.Unclassified, line)
		}
		rep.Ledgers = append(rep.Ledgers, l)
	}
	return rep, nil
}

func lineFromProto(p *ledgerv1.TrialBalanceLine) (accounting.Line, error) {
	l := accounting.Line{Code: p.GetCode(), Account: p.GetAccountId(), Name: p.GetName(), Depth: int(p.GetDepth()),
		Leaf: p.GetLeaf(),
		Totals: accounting.Totals{DebitsPosted: u128(p.GetDebitsPosted()), CreditsPosted: u128(p.GetCreditsPosted()),
			DebitsPending: u128(p.GetDebitsPending()), CreditsPending: u128(p.GetCreditsPending()), Accounts: p.GetAccounts()}}
	if c := p.GetCategory(); c != "" {
		var ok bool
		if l.Category, ok = rules.ParseCategory(c); !ok {
			return l, fmt.Errorf("line %q: unknown category %q", p.GetName(), c)
		}
	}
	switch p.GetNormalSide() {
	case "debit":
		l.Side = rules.Debit
	case "credit":
		l.Side = rules.Credit
	default:
		return l, fmt.Errorf("line %q: unknown side %q", p.GetName(), p.GetNormalSide())
	}
	var ok bool
	if l.Balance, ok = new(big.Int).SetString(p.GetBalance(), 10); !ok {
		return l, fmt.Errorf("line %q: balance %q is not a decimal", p.GetName(), p.GetBalance())
	}
	return l, nil
}
