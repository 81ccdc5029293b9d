package channel

import (
	"errors"
	"strings"
	"testing"
)

// REVIEW (fails): ParseNotices promises that "every notice in it must be one ParseNotice
// accepts", and PROTOCOL.md that an array holds notices "each exactly as above" (at most
// MaxNoticeBytes). A notice inside an array is not held to MaxNoticeBytes: a 5,000-byte txn
// (or biz id) that ParseNotice refuses alone is accepted in an array of one, and goes on to be
// stored on the order (its txn, or an exception record's).
func TestReviewArrayNoticeOverMaxNoticeBytes(t *testing.T) {
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
