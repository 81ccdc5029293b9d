package channel

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const stmtHead = "date,txn,op,order_no,original,status,amount,currency,completed_at\n"

func TestParseStatement(t *testing.T) {
	in := stmtHead +
		"2026-11-26,T1,pay,P1,,succeeded,100,CNY,2026-11-26T10:00:00.5Z\n" +
		"2026-11-26,T2,refund,P1-x0-1,P1,failed,0,CNY,2026-11-26T11:00:00Z\n" +
		"2026-11-26,T3,payout,P4,,succeeded,7,CNY,2026-11-26T23:59:59.999999999Z\n"
	ls, err := ParseStatement(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 {
		t.Fatalf("%d lines", len(ls))
	}
	want := StatementLine{Date: "2026-11-26", Txn: "T1", Op: Pay, OrderNo: "P1", Status: Succeeded, Amount: 100,
		Currency: "CNY", CompletedAt: time.Date(2026, 11, 26, 10, 0, 0, 5e8, time.UTC)}
	if ls[0] != want {
		t.Fatalf("line 2: %+v, want %+v", ls[0], want)
	}
	if ls[1].Op != Refund || ls[1].Original != "P1" || ls[1].Status != Failed {
		t.Fatalf("line 3: %+v", ls[1])
	}
	if n := ls[0].Notice(); n != (Notice{Op: Pay, OrderNo: "P1", Txn: "T1", Status: Succeeded, Amount: 100}) {
		t.Fatalf("notice %+v", n)
	}
	if ls, err := ParseStatement(strings.NewReader(stmtHead)); err != nil || len(ls) != 0 {
		t.Fatalf("header only: %v %v", ls, err)
	}
}

func TestParseStatementRefuses(t *testing.T) {
	good := "2026-11-26,T1,pay,P1,,succeeded,100,CNY,2026-11-26T10:00:00Z"
	bad := map[string]string{
		"no header":     "",
		"header":        "date,txn,op,order_no,original,status,amount,currency\n",
		"header case":   strings.ToUpper(stmtHead),
		"fields":        stmtHead + "2026-11-26,T1,pay,P1,,succeeded,100,CNY\n",
		"date":          stmtHead + strings.Replace(good, "2026-11-26,", "2026-11-32,", 1) + "\n",
		"date form":     stmtHead + strings.Replace(good, "2026-11-26,", "26/11/2026,", 1) + "\n",
		"txn":           stmtHead + strings.Replace(good, "T1", "", 1) + "\n",
		"op":            stmtHead + strings.Replace(good, ",pay,", ",charge,", 1) + "\n",
		"order_no":      stmtHead + strings.Replace(good, ",P1,", ",,", 1) + "\n",
		"original":      stmtHead + strings.Replace(good, ",P1,,", ",P1,P0,", 1) + "\n",
		"refund w/o":    stmtHead + strings.Replace(good, ",pay,", ",refund,", 1) + "\n",
		"status":        stmtHead + strings.Replace(good, "succeeded", "processing", 1) + "\n",
		"amount":        stmtHead + strings.Replace(good, ",100,", ",-100,", 1) + "\n",
		"amount zero":   stmtHead + strings.Replace(good, ",100,", ",0100,", 1) + "\n",
		"success of 0":  stmtHead + strings.Replace(good, ",100,", ",0,", 1) + "\n",
		"failure with":  stmtHead + strings.Replace(good, "succeeded", "failed", 1) + "\n",
		"currency":      stmtHead + strings.Replace(good, "CNY", "cny", 1) + "\n",
		"completed_at":  stmtHead + strings.Replace(good, "T10:00:00Z", "T10:00:00+08:00", 1) + "\n",
		"completed day": stmtHead + strings.Replace(good, "2026-11-26T", "2026-11-25T", 1) + "\n",
		"two dates":     stmtHead + good + "\n" + strings.ReplaceAll(strings.Replace(good, "T1", "T2", 1), "2026-11-26", "2026-11-27") + "\n",
		"txn twice":     stmtHead + good + "\n" + good + "\n",
		"too long":      stmtHead + strings.Replace(good, "T1", strings.Repeat("T", MaxIDBytes+1), 1) + "\n",
		"bare quote":    stmtHead + strings.Replace(good, "T1", `T"1`, 1) + "\n",
	}
	for name, in := range bad {
		_, err := ParseStatement(strings.NewReader(in))
		if !errors.Is(err, ErrBadStatement) {
			t.Errorf("%s: %v, want ErrBadStatement", name, err)
			continue
		}
		if name != "no header" && !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: %v names no line", name, err)
		}
	}
	_, err := ParseStatement(strings.NewReader(stmtHead + good + "\n" + strings.Replace(good, "T1", "T2", 1) + ",x\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("a bad third line: %v", err)
	}
}

// TestVerifyStatement: only the exact bytes signed with the secret, as the statement of the
// date asked for, pass; a changed byte, another date, a missing or malformed signature,
// another secret or no secret, or a notice's signature of the same bytes are refused. An
// empty statement (the same bytes every day) signed for one day does not verify as
// another's.
func TestVerifyStatement(t *testing.T) {
	secret := []byte("0123456789abcdef")
	const date = "2026-11-26"
	body := []byte(stmtHead + "2026-11-26,T1,pay,P1,,succeeded,100,CNY,2026-11-26T10:00:00Z\n")
	sig := SignStatement(secret, date, body)
	if err := VerifyStatement(secret, date, body, sig); err != nil {
		t.Fatal(err)
	}
	empty := []byte(stmtHead)
	forged := []byte(strings.Replace(string(body), ",100,", ",900,", 1))
	for name, c := range map[string]struct {
		secret, body []byte
		date, sig    string
	}{
		"changed":      {secret, forged, date, sig},
		"another date": {secret, body, "2026-11-27", sig},
		"unsigned":     {secret, body, date, ""},
		"not hex":      {secret, body, date, "zz" + sig[2:]},
		"short":        {secret, body, date, sig[:62]},
		"upper":        {secret, body, date, strings.ToUpper(sig) + "x"},
		"other key":    {[]byte("fedcba9876543210"), body, date, sig},
		"no key":       {nil, body, date, sig},
		"a notice's":   {secret, body, date, sign(secret, body)},
		"empty replay": {secret, empty, "2026-11-26", SignStatement(secret, "2020-01-01", empty)},
	} {
		if err := VerifyStatement(c.secret, c.date, c.body, c.sig); !errors.Is(err, ErrStatementSignature) {
			t.Errorf("%s: %v, want ErrStatementSignature", name, err)
		}
	}
	if err := VerifyStatement(secret, "2020-01-01", empty, SignStatement(secret, "2020-01-01", empty)); err != nil {
		t.Fatalf("an empty statement of its own day: %v", err)
	}
	if _, err := ParseSignedStatement(secret, body, SignStatement(secret, "2026-11-27", body), "2026-11-27"); !errors.Is(err, ErrBadStatement) {
		t.Fatalf("a statement of another date: %v", err)
	}
	if ls, err := ParseSignedStatement(secret, body, sig, "2026-11-26"); err != nil || len(ls) != 1 {
		t.Fatalf("%v %v", ls, err)
	}
}

// FuzzParseStatement: any input is refused with ErrBadStatement or parsed into lines that
// satisfy every rule of the format; nothing panics. Seeded with a good statement and each
// refusal of TestParseStatementRefuses.
func FuzzParseStatement(f *testing.F) {
	f.Add([]byte(stmtHead + "2026-11-26,T1,pay,P1,,succeeded,100,CNY,2026-11-26T10:00:00.5Z\n" +
		"2026-11-26,T2,refund,P1-x0-1,P1,failed,0,CNY,2026-11-26T11:00:00Z\n"))
	f.Add([]byte(stmtHead))
	f.Add([]byte(stmtHead + "2026-11-26,\"T,1\",payout,P4,,succeeded,7,USD,2026-11-26T23:59:59.999999999Z\n"))
	f.Add([]byte("date,txn\n1,2\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ls, err := ParseStatement(strings.NewReader(string(in)))
		if err != nil {
			if !errors.Is(err, ErrBadStatement) || ls != nil {
				t.Fatalf("refusal %v with %d lines", err, len(ls))
			}
			return
		}
		seen := map[string]bool{}
		for _, l := range ls {
			if l.Date != ls[0].Date || l.Txn == "" || l.OrderNo == "" || seen[l.Txn] ||
				(l.Status == Succeeded) != (l.Amount > 0) || (l.Op == Refund) != (l.Original != "") ||
				l.CompletedAt.Format(time.DateOnly) != l.Date || len(l.Currency) != 3 {
				t.Fatalf("accepted a line breaking the format: %+v", l)
			}
			seen[l.Txn] = true
		}
	})
}
