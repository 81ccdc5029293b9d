package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/payment"
	reconlib "github.com/ledgercore/ledger/ledger/recon"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

func init() {
	paymentUsage["recon"] = "ledgerctl recon [--addr HOST:PORT] --biz-id BIZ | --follow [--from SEQ] [--window D] [--grace D]"
	paymentUsage["recon-findings"] = "ledgerctl recon-findings [--addr HOST:PORT] [--all] [--after ID] [--limit N] [--csv]"
	paymentUsage["resolve-recon"] = "ledgerctl resolve-recon [--addr HOST:PORT] [--note TEXT] ID"
}

// A finding's ID on the command line: FIRST/KIND/BIZ (the biz id last, so that it may hold
// any character, "/" too).

func findingID(k *ledgerv1.ReconFindingKey) string {
	return fmt.Sprintf("%d/%s/%s", k.GetFirstSequence(), reconKindName(k.GetKind()), k.GetBizId())
}

func reconKindName(k ledgerv1.ReconFindingKind) string {
	return enumName(k.String(), "RECON_FINDING_KIND_")
}

func parseFindingID(s string) (*ledgerv1.ReconFindingKey, error) {
	first, rest, ok1 := strings.Cut(s, "/")
	kind, biz, ok2 := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(first, 10, 64)
	if !ok1 || !ok2 || err != nil || biz == "" {
		return nil, fmt.Errorf("%q is not a finding id (FIRST/KIND/BIZ, as recon-findings prints it)", s)
	}
	k, ok := reconlib.ParseKind(kind)
	if !ok {
		return nil, fmt.Errorf("%q: unknown finding kind %q", s, kind)
	}
	if len(biz) > ledger.BizIDBytesMax {
		return nil, fmt.Errorf("%q: the biz id is longer than %d bytes", s, ledger.BizIDBytesMax)
	}
	return &ledgerv1.ReconFindingKey{BizId: biz, Kind: api.ReconKindToProto(k), FirstSequence: n}, nil
}

func nsTime(ns uint64, layout string) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, int64(ns)).UTC().Format(layout)
}

func idList(ids []uint64) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(out, " ")
}

func diffCount(f *ledgerv1.ReconFinding) uint64 {
	return uint64(len(f.GetDifferences())) + uint64(f.GetMoreDifferences())
}

// printFindings prints findings as two aligned tables: one line per finding, then one line
// per difference, and a note that the amounts in the differences are in minor units of the
// order's currency: their text is the finding's durable record, and names its digest, so it
// is printed as recorded (the orders' tables show the amounts in their currency).
func printFindings(stdout io.Writer, fs []*ledgerv1.ReconFinding) int {
	if len(fs) == 0 {
		fmt.Fprintln(stdout, "no findings")
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tBIZ ID\tSTATE\tORDERS\tWINDOW\tDIFFS\tCREATED\tRESOLVED\tNOTE")
	for _, f := range fs {
		resolved := "-"
		if f.GetState() == ledgerv1.ReconFindingState_RECON_FINDING_STATE_RESOLVED {
			resolved = nsTime(f.GetUpdated(), time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d-%d\t%d\t%s\t%s\t%s\n", cell(findingID(f.GetKey())),
			reconKindName(f.GetKey().GetKind()), cell(f.GetKey().GetBizId()),
			enumName(f.GetState().String(), "RECON_FINDING_STATE_"), cell(idList(f.GetOrderIds())),
			f.GetKey().GetFirstSequence(), f.GetClosedSequence(), diffCount(f), cell(nsTime(f.GetCreated(), time.RFC3339)),
			resolved, cell(f.GetNote()))
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	w = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := false
	for _, f := range fs {
		for _, d := range f.GetDifferences() {
			if !header {
				fmt.Fprintln(stdout)
				fmt.Fprintln(w, "ID\tDIFFERENCE\tORDER\tSTEP\tTRANSFER\tEXPECTED\tFOUND")
				header = true
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", cell(findingID(f.GetKey())), cell(d.GetKind()), d.GetOrderId(),
				d.GetStep(), d.GetTransferId(), cell(d.GetExpected()), cell(d.GetFound()))
		}
		if n := f.GetMoreDifferences(); n > 0 {
			fmt.Fprintf(w, "%s\t... and %d more\n", cell(findingID(f.GetKey())), n)
		}
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	if header {
		fmt.Fprintln(stdout, "(amounts in EXPECTED and FOUND are minor units of the order's currency: see ledgerctl orders)")
	}
	return 0
}

// findingsHeader is the CSV header of recon-findings --csv: one record per difference (a
// finding without any has one, its difference cells empty). The amounts in expected and found
// are minor units of the order's currency, as recorded.
var findingsHeader = []string{"id", "biz_id", "kind", "state", "orders", "first_sequence", "closed_sequence",
	"created", "updated", "note", "differences_total", "difference", "difference_kind", "order_id", "step",
	"transfer_id", "expected", "found"}

func writeFindingsCSV(stdout io.Writer, fs []*ledgerv1.ReconFinding) int {
	w := csv.NewWriter(stdout)
	_ = w.Write(findingsHeader)
	for _, f := range fs {
		k := f.GetKey()
		head := []string{findingID(k), k.GetBizId(), reconKindName(k.GetKind()),
			enumName(f.GetState().String(), "RECON_FINDING_STATE_"), idList(f.GetOrderIds()),
			strconv.FormatUint(k.GetFirstSequence(), 10), strconv.FormatUint(f.GetClosedSequence(), 10),
			nsTime(f.GetCreated(), time.RFC3339Nano), nsTime(f.GetUpdated(), time.RFC3339Nano), f.GetNote(),
			strconv.FormatUint(diffCount(f), 10)}
		rows := [][]string{append(slices.Clone(head), "", "", "", "", "", "", "")}
		if len(f.GetDifferences()) > 0 {
			rows = rows[:0]
		}
		for i, d := range f.GetDifferences() {
			rows = append(rows, append(slices.Clone(head), strconv.Itoa(i), d.GetKind(),
				strconv.FormatUint(d.GetOrderId(), 10), strconv.FormatUint(uint64(d.GetStep()), 10),
				strconv.FormatUint(d.GetTransferId(), 10), d.GetExpected(), d.GetFound()))
		}
		for _, row := range rows {
			// The biz id, the note and the differences' text come from callers and channels:
			// escaped as in every CSV the ledger writes for finance tools.
			for i := range row {
				row[i] = accounting.CSVCell(row[i])
			}
			_ = w.Write(row)
		}
	}
	w.Flush()
	if w.Error() != nil {
		return 2
	}
	return 0
}

// reconFindings lists the findings of near-real-time reconciliation, a page at a time.
func reconFindings(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("recon-findings", stdout, stderr)
	all := c.fs.Bool("all", false, "list resolved findings too")
	after := c.fs.String("after", "", "only findings after this `ID` (the previous page's last)")
	limit := c.fs.Uint("limit", 100, "at most this many findings (1 to 1000)")
	asCSV := c.fs.Bool("csv", false, "write CSV for finance tools, one record per difference")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) > 0 {
		return c.fail("unexpected arguments %q", c.args)
	}
	if *limit == 0 || *limit > api.ReconFindingPageMax {
		return c.fail("--limit must be 1 to %d, not %d", api.ReconFindingPageMax, *limit)
	}
	var afterKey *ledgerv1.ReconFindingKey
	if *after != "" {
		k, err := parseFindingID(*after)
		if err != nil {
			return c.fail("--after: %v", err)
		}
		afterKey = k
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ListReconFindings(ctx, &ledgerv1.ListReconFindingsRequest{IncludeResolved: *all, After: afterKey,
			Limit: uint32(*limit)})
		if err != nil {
			return c.rpcError(err, "")
		}
		var code int
		if *asCSV {
			code = writeFindingsCSV(stdout, resp.GetFindings())
		} else {
			code = printFindings(stdout, resp.GetFindings())
		}
		if code != 0 {
			return code
		}
		if next := resp.GetNextAfter(); next != nil {
			flagAll := ""
			if *all {
				flagAll = " --all"
			}
			fmt.Fprintf(stderr, "more: ledgerctl recon-findings%s --after '%s'\n", flagAll, findingID(next))
		}
		return 0
	})
}

// resolveRecon resolves a finding with a note. Exit 1 when there is no such finding or it is
// resolved already (nothing written).
func resolveRecon(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("resolve-recon", stdout, stderr)
	note := c.fs.String("note", "", "the finance user's note, kept on the finding (printable, at most 256 bytes)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) != 1 {
		return c.fail("want one finding ID, not %q", c.args)
	}
	key, err := parseFindingID(c.args[0])
	if err != nil {
		return c.fail("%v", err)
	}
	if len(*note) > api.ReconNoteBytesMax {
		return c.fail("--note: %d bytes; at most %d", len(*note), api.ReconNoteBytesMax)
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ResolveReconFinding(ctx, &ledgerv1.ResolveReconFindingRequest{Key: key, Note: *note})
		if status.Code(err) == codes.FailedPrecondition {
			fmt.Fprintf(stderr, "resolve-recon: finding %s is resolved already\n", c.args[0])
			return 1
		}
		if err != nil {
			return c.rpcError(err, fmt.Sprintf("no finding %s", c.args[0]))
		}
		return printFindings(stdout, []*ledgerv1.ReconFinding{resp.GetFinding()})
	})
}

// followContext is the context recon --follow runs in: done at SIGINT or SIGTERM (tests
// replace it).
var followContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// followConfig configures recon --follow.
type followConfig struct {
	from   uint64 // the first sequence to read; 0: the oldest kept
	window time.Duration
	grace  time.Duration
	tick   time.Duration
	now    func() uint64
}

// followTick is how often recon --follow looks at the wall clock (tests shorten it);
// followRetry how long it waits before following again after the stream broke.
var followTick = time.Second

const followRetry = time.Second

// followWidths are the column widths of recon --follow's lines (a stream: no table to align
// after the fact).
var followWidths = []int{30, 17, 20, 14, 15, 5}

func followLine(cells ...string) string {
	var b strings.Builder
	for i, s := range cells {
		if i < len(followWidths) {
			fmt.Fprintf(&b, "%-*s  ", followWidths[i], s)
		} else {
			b.WriteString(s)
		}
	}
	return strings.TrimRight(b.String(), " ")
}

// follower is recon --follow's state: the matcher and what it has not printed.
type follower struct {
	cfg         followConfig
	m           *reconlib.Matcher
	pc          ledgerv1.PaymentServiceClient
	stdout      io.Writer
	stderr      io.Writer
	versions    uint32         // order events taken: the versions given to the matcher
	order       *payment.Order // the last order event (an exception event follows its order)
	first, last uint64         // sequences read
	windows     uint64         // windows closed and checked
	findings    map[reconlib.Kind]uint64
	unconfirmed []reconlib.Window // windows the store's check could not be asked about yet
	unchecked   uint64            // windows the store refused to check (too large)
}

// event gives one event of the stream to the matcher. The wire's order carries no version and
// no stage: the versions are the order events' count (the matcher compares versions of one
// order within a window, all read in commit order), and an order PROCESSING is taken as
// awaiting its channel.
func (f *follower) event(e *ledgerv1.Event) {
	seq := e.GetSequence()
	if f.first == 0 {
		f.first = seq
	}
	f.last = seq
	switch {
	case e.GetTransfer() != nil:
		t := api.TransferFromProto(e.GetTransfer())
		f.m.Transfer(seq, &t)
	case e.GetPosting() != nil:
		f.m.Advance(e.GetPosting().GetTimestamp())
	case e.GetOrder() != nil:
		o := api.OrderFromProto(e.GetOrder())
		f.versions++
		o.Version = f.versions
		if o.State == payment.Processing {
			o.Stage = payment.StageAwait
		}
		f.order = o
		f.m.Order(seq, o, -1)
	case e.GetException() != nil:
		x := e.GetException()
		if f.order == nil || f.order.ID != x.GetOrderId() || int(x.GetIndex()) >= len(f.order.Exceptions) {
			return // its order came before the first event read
		}
		f.m.Order(seq, f.order, int(x.GetIndex()))
	}
}

// flush checks the windows closed against the store (ReconcileBizId) and prints their
// findings, each once.
func (f *follower) flush(ctx context.Context) {
	windows := append(f.unconfirmed, f.m.Take()...)
	f.unconfirmed = nil
	for i := range windows {
		w := &windows[i]
		if w.Partial {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			resp, err := f.pc.ReconcileBizId(cctx, &ledgerv1.ReconcileBizIdRequest{BizId: w.BizID})
			cancel()
			switch code := status.Code(err); {
			case err == nil:
				diffs := make([]payment.Difference, len(resp.GetDifferenceDetails()))
				for j, d := range resp.GetDifferenceDetails() {
					diffs[j] = api.ReconDifferenceFromProto(d)
				}
				f.m.Confirm(w, diffs)
				if more := int(resp.GetDifferencesTotal()) - len(diffs); more > 0 {
					for j := range w.Findings {
						if w.Findings[j].Kind == reconlib.KindLedger {
							w.Findings[j].More += more
						}
					}
				}
			case code == codes.FailedPrecondition || code == codes.InvalidArgument:
				fmt.Fprintf(f.stderr, "recon: biz id %q: the store's three-way check refused: %s\n", w.BizID, status.Convert(err).Message())
				f.unchecked++
				w.Partial = false
			default:
				if ctx.Err() == nil {
					fmt.Fprintf(f.stderr, "recon: biz id %q: the store's three-way check failed (retried): %v\n", w.BizID, err)
				}
				f.unconfirmed = append(f.unconfirmed, windows[i:]...)
				return // in order: the windows after it wait too
			}
		}
		f.windows++
		for j := range w.Findings {
			x := &w.Findings[j]
			f.findings[x.Kind]++
			first := ""
			if len(x.Differences) > 0 {
				first = cell(x.Differences[0].String())
			}
			key := &ledgerv1.ReconFindingKey{BizId: x.BizID, Kind: api.ReconKindToProto(x.Kind), FirstSequence: x.First}
			fmt.Fprintln(f.stdout, followLine(cell(findingID(key)), string(x.Kind), cell(x.BizID), cell(idList(x.Orders)),
				fmt.Sprintf("%d-%d", x.First, x.Closed), strconv.Itoa(len(x.Differences)+x.More), first))
		}
	}
}

func (f *follower) summary() string {
	st := f.m.Stats()
	var kinds []string
	var total uint64
	for _, k := range reconlib.Kinds {
		if n := f.findings[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			total += n
		}
	}
	by := ""
	if len(kinds) > 0 {
		by = " (" + strings.Join(kinds, ", ") + ")"
	}
	read := "no events read"
	if f.first != 0 {
		read = fmt.Sprintf("events %d to %d", f.first, f.last)
	}
	return fmt.Sprintf("recon --follow: %s; %d windows closed, %d matched, %d findings%s; %d windows still open, %d not checked against the store; nothing recorded",
		read, f.windows, st.Matched, total, by, st.Tracked+len(f.unconfirmed), len(f.unconfirmed)+int(f.unchecked))
}

// followStream follows the event stream until ctx is done: exit 0 then, after the summary
// line; 2 when the stream cannot be followed at all (the first subscription fails).
func followStream(ctx context.Context, conn *grpc.ClientConn, cfg followConfig, stdout, stderr io.Writer) int {
	m, err := reconlib.New(nil, reconlib.Config{Window: uint64(cfg.window), StoreVerdict: true})
	if err != nil {
		fmt.Fprintf(stderr, "recon: %v\n", err)
		return 2
	}
	f := &follower{cfg: cfg, m: m, pc: ledgerv1.NewPaymentServiceClient(conn), stdout: stdout, stderr: stderr,
		findings: map[reconlib.Kind]uint64{}}
	lc := ledgerv1.NewLedgerServiceClient(conn)
	fmt.Fprintln(stdout, followLine("ID", "KIND", "BIZ ID", "ORDERS", "WINDOW", "DIFFS", "FIRST DIFFERENCE"))
	type batch struct {
		events []*ledgerv1.Event
		err    error
	}
	ticker := time.NewTicker(cfg.tick)
	defer ticker.Stop()
	received := false
	for {
		req := &ledgerv1.SubscribeRequest{FromSequence: f.last}
		switch {
		case f.last == 0 && cfg.from == 0:
			req.Oldest = true
		case f.last == 0:
			req.FromSequence = cfg.from - 1
		}
		sctx, cancel := context.WithCancel(ctx)
		batches := make(chan batch)
		go func() {
			defer close(batches)
			stream, err := lc.Subscribe(sctx, req)
			for err == nil {
				var resp *ledgerv1.SubscribeResponse
				if resp, err = stream.Recv(); err == nil {
					select {
					case batches <- batch{events: resp.GetEvents()}:
					case <-sctx.Done():
						return
					}
				}
			}
			select {
			case batches <- batch{err: err}:
			case <-sctx.Done():
			}
		}()
		idle := false
		var streamErr error
	recv:
		for {
			select {
			case <-ctx.Done():
				cancel()
				for range batches {
				}
				fmt.Fprintln(stdout, f.summary())
				return 0
			case b, ok := <-batches:
				if !ok {
					break recv
				}
				if b.err != nil {
					streamErr = b.err
					break recv
				}
				received, idle = true, false
				for _, e := range b.events {
					f.event(e)
				}
				f.flush(ctx)
			case <-ticker.C:
				// An idle stream: once no event came for a whole tick, the wall clock closes the
				// windows that ended a grace period ago.
				if idle {
					if now, grace := cfg.now(), uint64(cfg.grace); now > grace {
						f.m.Advance(now - grace)
					}
				}
				idle = true
				f.flush(ctx)
			}
		}
		cancel()
		for range batches {
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, f.summary())
			return 0
		}
		st := status.Convert(streamErr)
		switch {
		case !received && (st.Code() != codes.OutOfRange || cfg.from != 0):
			fmt.Fprintf(stderr, "recon: following the event stream: %s: %s\n", st.Code(), st.Message())
			return 2
		case st.Code() == codes.OutOfRange:
			fmt.Fprintf(stderr, "recon: events trimmed by retention before they were read (%s); following on from the oldest kept\n", st.Message())
			f.last, cfg.from = 0, 0
		default:
			fmt.Fprintf(stderr, "recon: the event stream broke (%s: %s); following again after sequence %d\n", st.Code(), st.Message(), f.last)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, f.summary())
			return 0
		case <-time.After(followRetry):
		}
	}
}

// reconFollow runs recon --follow.
func reconFollow(c *payCmd, cfg followConfig) int {
	if err := (&reconlib.Config{Window: uint64(cfg.window)}).Validate(); err != nil || cfg.window <= 0 {
		return c.fail("--window must be 1s to 24h, not %v", cfg.window)
	}
	if cfg.grace < 0 || cfg.grace > time.Hour {
		return c.fail("--grace must be 0 to 1h, not %v", cfg.grace)
	}
	conn, err := grpc.NewClient(*c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
		return 2
	}
	defer conn.Close()
	ctx, stop := followContext()
	defer stop()
	return followStream(ctx, conn, cfg, c.stdout, c.stderr)
}
