package channel

import (
	"errors"
	"strings"
	"testing"
)

var testSecret = []byte("test-secret-0123456789")

func goodNotice() Notice {
	return Notice{Op: Pay, OrderNo: "o-1", Txn: "T1", Status: Succeeded, Amount: 1234, BizID: "biz-9"}
}

func TestNoticeRoundTrip(t *testing.T) {
	for _, n := range []Notice{goodNotice(), {Op: Refund, OrderNo: "r\"<>", Txn: "x", Status: Failed}} {
		body, sig := SignNotice(testSecret, n)
		got, err := ParseNotice(testSecret, body, sig)
		if err != nil || got != n {
			t.Fatalf("ParseNotice(SignNotice(%+v)) = %+v, %v", n, got, err)
		}
	}
}

func TestParseNoticeRefuses(t *testing.T) {
	body, sig := SignNotice(testSecret, goodNotice())
	signed := func(s string) ([]byte, string) { return []byte(s), sign(testSecret, []byte(s)) }
	cases := []struct {
		name   string
		secret []byte
		body   []byte
		sig    string
		want   string
	}{
		{"no secret", nil, body, sig, "no secret"},
		{"other secret", []byte("other"), body, sig, "signature does not match"},
		{"empty sig", testSecret, body, "", "not 32 hex bytes"},
		{"non-hex sig", testSecret, body, strings.Repeat("zz", 32), "not 32 hex bytes"},
		{"short sig", testSecret, body, sig[:62], "not 32 hex bytes"},
		{"flipped body", testSecret, append([]byte(nil), append(body[:len(body)-1:len(body)-1], ' ')...), sig, "does not match"},
		{"oversized", testSecret, []byte(strings.Repeat(" ", MaxNoticeBytes+1)), sig, "exceeds"},
	}
	for _, c := range []struct{ name, body, want string }{
		{"not an object", `[1]`, "not a JSON object"},
		{"truncated", `{"op":"pay","order_no":"o"`, "malformed JSON"},
		{"unknown field", `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":"","x":1}`, `unknown object member name "x"`},
		{"case-folded field", `{"OP":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}`, `unknown object member name "OP"`},
		{"repeated field", `{"op":"pay","op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}`, "repeated"},
		{"missing field", `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":0}`, `"biz_id" missing`},
		{"null", `{"op":"pay","order_no":null,"txn":"t","status":"failed","amount":0,"biz_id":""}`, "null"},
		{"trailing", `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""} {}`, "after top-level value"},
		{"negative amount", `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":-1,"biz_id":""}`, `"/amount"`},
		{"string amount", `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":"1","biz_id":""}`, `"/amount"`},
		{"bad op", `{"op":"steal","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}`, "unknown op"},
		{"processing", `{"op":"pay","order_no":"o","txn":"t","status":"processing","amount":0,"biz_id":""}`, "not succeeded or failed"},
		{"empty order_no", `{"op":"pay","order_no":"","txn":"t","status":"failed","amount":0,"biz_id":""}`, "order_no is empty"},
		{"empty txn", `{"op":"pay","order_no":"o","txn":"","status":"failed","amount":0,"biz_id":""}`, "txn is empty"},
	} {
		b, s := signed(c.body)
		cases = append(cases, struct {
			name   string
			secret []byte
			body   []byte
			sig    string
			want   string
		}{c.name, testSecret, b, s, c.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseNotice(c.secret, c.body, c.sig)
			if !errors.Is(err, ErrBadNotice) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrBadNotice containing %q", err, c.want)
			}
		})
	}
}

func TestNoticesRoundTrip(t *testing.T) {
	ns := []Notice{goodNotice(), {Op: Refund, OrderNo: "r\"<>", Txn: "x", Status: Failed}, {Op: Payout, OrderNo: "w", Txn: "y", Status: Succeeded, Amount: 1}}
	for k := 1; k <= len(ns); k++ {
		body, sig := SignNotices(testSecret, ns[:k])
		got, err := ParseNotices(testSecret, body, sig)
		if err != nil || len(got) != k {
			t.Fatalf("ParseNotices(SignNotices(%d)) = %+v, %v", k, got, err)
		}
		for i := range got {
			if got[i] != ns[i] {
				t.Fatalf("notice %d: %+v, want %+v", i, got[i], ns[i])
			}
		}
	}
	// One notice alone (an object) is read by ParseNotices too.
	body, sig := SignNotice(testSecret, goodNotice())
	if got, err := ParseNotices(testSecret, body, sig); err != nil || len(got) != 1 || got[0] != goodNotice() {
		t.Fatalf("ParseNotices(one object) = %+v, %v", got, err)
	}
	// ParseNotice reads one object only.
	body, sig = SignNotices(testSecret, ns[:1])
	if _, err := ParseNotice(testSecret, body, sig); !errors.Is(err, ErrBadNotice) {
		t.Fatalf("ParseNotice(an array) = %v", err)
	}
}

func TestParseNoticesRefuses(t *testing.T) {
	good := `{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}`
	many := make([]Notice, MaxNoticesPerPost+1)
	for i := range many {
		many[i] = goodNotice()
	}
	tooMany, _ := SignNotices(testSecret, many)
	for _, c := range []struct{ name, body, want string }{
		{"empty array", `[]`, "empty"},
		{"one bad of two", `[` + good + `,{"op":"pay"}]`, "missing"},
		{"repeated key in an element", `[` + good + `,{"op":"pay","op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}]`, "repeated"},
		{"nested array", `[[` + good + `]]`, "malformed"},
		{"not an array of objects", `[1]`, "malformed"},
		{"bad op in an element", `[` + good + `,{"op":"steal","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}]`, "notice 1: channel: bad notice: unknown op"},
		{"trailing", `[` + good + `] []`, "after top-level value"},
		{"too many", string(tooMany), "more than"},
		{"object too long", good[:len(good)-1] + strings.Repeat(" ", MaxNoticeBytes) + "}", "exceeds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseNotices(testSecret, []byte(c.body), sign(testSecret, []byte(c.body)))
			if !errors.Is(err, ErrBadNotice) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrBadNotice containing %q", err, c.want)
			}
		})
	}
	body := []byte(`[` + good + `]`)
	if _, err := ParseNotices(testSecret, body, sign([]byte("other"), body)); !errors.Is(err, ErrBadNotice) {
		t.Fatalf("a body signed with another secret: %v", err)
	}
	long := []byte(`[` + strings.Repeat(good+",", MaxNoticesBytes/len(good)) + good + `]`)
	if _, err := ParseNotices(testSecret, long, sign(testSecret, long)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("a body past MaxNoticesBytes: %v", err)
	}
}

func FuzzParseNotices(f *testing.F) {
	body, sig := SignNotices(testSecret, []Notice{goodNotice(), goodNotice()})
	f.Add(body, sig)
	f.Add(body[:len(body)/2], sign(testSecret, body[:len(body)/2]))
	one, sig1 := SignNotice(testSecret, goodNotice())
	f.Add(one, sig1)
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		ns, err := ParseNotices(testSecret, body, sig)
		if err != nil {
			if !errors.Is(err, ErrBadNotice) {
				t.Fatalf("refusal %v does not wrap ErrBadNotice", err)
			}
		} else {
			if len(ns) == 0 || len(ns) > MaxNoticesPerPost {
				t.Fatalf("accepted %d notices", len(ns))
			}
			b2, s2 := SignNotices(testSecret, ns)
			ns2, err := ParseNotices(testSecret, b2, s2)
			if err != nil || len(ns2) != len(ns) {
				t.Fatalf("accepted %+v does not round-trip: %+v, %v", ns, ns2, err)
			}
			for i := range ns {
				if ns[i] != ns2[i] {
					t.Fatalf("notice %d: %+v round-trips to %+v", i, ns[i], ns2[i])
				}
			}
			if strings.ToLower(sig) != sign(testSecret, body) {
				t.Fatalf("accepted a body not signed with the secret (sig %q)", sig)
			}
		}
		_, _ = ParseNotices(testSecret, body, sign(testSecret, body))
	})
}

func FuzzParseNotice(f *testing.F) {
	body, sig := SignNotice(testSecret, goodNotice())
	f.Add(body, sig)
	f.Add(body, "")
	f.Add(body, strings.Repeat("0", 64))
	f.Add(body[:len(body)/2], sig)
	f.Add(body[:len(body)/2], sign(testSecret, body[:len(body)/2]))
	f.Add([]byte(`{"op":"pay","order_no":"o","txn":"t","status":"failed","amount":0,"biz_id":""}`), sig)
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		n, err := ParseNotice(testSecret, body, sig)
		if err != nil {
			if !errors.Is(err, ErrBadNotice) {
				t.Fatalf("refusal %v does not wrap ErrBadNotice", err)
			}
		} else {
			b2, s2 := SignNotice(testSecret, n)
			n2, err := ParseNotice(testSecret, b2, s2)
			if err != nil || n2 != n {
				t.Fatalf("accepted %+v does not round-trip: %+v, %v", n, n2, err)
			}
		}
		// The fuzzer cannot forge an HMAC: any body it makes is accepted only with its
		// true signature, and a body signed with another key is always refused.
		if err == nil && strings.ToLower(sig) != sign(testSecret, body) {
			t.Fatalf("accepted a body not signed with the secret (sig %q)", sig)
		}
		if _, err := ParseNotice(testSecret, body, sign([]byte("not the secret"), body)); err == nil {
			t.Fatal("accepted a body signed with another secret")
		}
		// Signed properly, the body decodes or is refused, never panics.
		_, _ = ParseNotice(testSecret, body, sign(testSecret, body))
	})
}
