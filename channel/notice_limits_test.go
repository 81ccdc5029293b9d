package channel

import (
	"errors"
	"strings"
	"testing"
)

// A notice in an array is held to MaxNoticeBytes as one alone is (found in review: a
// 5,000-byte txn refused alone was accepted in an array and stored on the order).
func TestParseNoticesHoldsEachNoticeToItsLimit(t *testing.T) {
	n := Notice{Op: Pay, OrderNo: "P1", Txn: strings.Repeat("T", 5000), Status: Succeeded, Amount: 1}
	one, sig := SignNotice(testSecret, n)
	if _, err := ParseNotice(testSecret, one, sig); !errors.Is(err, ErrBadNotice) {
		t.Fatalf("alone: %v", err)
	}
	many, sig := SignNotices(testSecret, []Notice{n})
	if ns, err := ParseNotices(testSecret, many, sig); err == nil {
		t.Fatalf("in an array: accepted a notice of %d bytes (txn of %d) that ParseNotice refuses alone",
			len(one), len(ns[0].Txn))
	}
}
