package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/money"
	reconlib "github.com/ledgercore/ledger/ledger/recon"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// The payment commands' usage lines, by command (each also printed by its --help).
var paymentUsage = map[string]string{
	"channels":        "ledgerctl channels [--addr HOST:PORT]",
	"channel degrade": "ledgerctl channel degrade [--addr HOST:PORT] NAME",
	"channel restore": "ledgerctl channel restore [--addr HOST:PORT] NAME",
	"orders":          "ledgerctl orders [--addr HOST:PORT] ID... | --biz-id BIZ [--limit N]",
	"exceptions":      "ledgerctl exceptions [--addr HOST:PORT] [--all] [--after ID] [--limit N] | --statements [--after-channel C --after-date D --after-txn T]",
	"resolve":         "ledgerctl resolve [--addr HOST:PORT] [--note TEXT] ORDER INDEX refund|close",
	"backup":          "ledgerctl backup [--addr HOST:PORT] [--verify] [--timeout D] NAME   (NAME: a new directory under ledgerd's --backup-root)",
}

// payCmd is one payment command being run: its flags, then its connection to ledgerd.
type payCmd struct {
	name    string
	fs      *flag.FlagSet
	addr    *string
	timeout *time.Duration
	args    []string // the positional arguments
	stdout  io.Writer
	stderr  io.Writer
}

func newPayCmd(name string, stdout, stderr io.Writer) *payCmd {
	c := &payCmd{name: name, stdout: stdout, stderr: stderr}
	c.fs = flag.NewFlagSet("ledgerctl "+name, flag.ContinueOnError)
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintf(c.fs.Output(), "usage: %s\n", paymentUsage[name])
		c.fs.PrintDefaults()
	}
	c.addr = c.fs.String("addr", "127.0.0.1:7070", "the gRPC address of a running ledgerd")
	c.timeout = c.fs.Duration("timeout", 30*time.Second, "how long to wait for ledgerd")
	return c
}

// parse parses the command's flags and positional arguments (parseArgs). It answers the exit
// status to return, or -1 to go on.
func (c *payCmd) parse(args []string) int {
	var code int
	c.args, code = parseArgs(c.fs, args)
	return code
}

// fail prints a usage error and answers exit status 2.
func (c *payCmd) fail(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\nusage: %s\n", c.name, fmt.Sprintf(format, args...), paymentUsage[c.name])
	return 2
}

// call runs fn with a PaymentService client of --addr, within --timeout.
func (c *payCmd) call(fn func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int) int {
	conn, err := grpc.NewClient(*c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *c.timeout)
	defer cancel()
	return fn(ctx, ledgerv1.NewPaymentServiceClient(conn))
}

// rpcError prints an RPC's error and answers exit status 2, or 1 with notFound's message for
// NOT_FOUND when notFound is not empty.
func (c *payCmd) rpcError(err error, notFound string) int {
	st := status.Convert(err)
	if st.Code() == codes.NotFound && notFound != "" {
		fmt.Fprintf(c.stderr, "%s: %s\n", c.name, notFound)
		return 1
	}
	fmt.Fprintf(c.stderr, "%s: %s: %s\n", c.name, st.Code(), st.Message())
	return 2
}

// channels lists the payment channels.
func channels(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("channels", stdout, stderr)
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) > 0 {
		return c.fail("unexpected arguments %q", c.args)
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ListChannels(ctx, &ledgerv1.ListChannelsRequest{})
		if err != nil {
			return c.rpcError(err, "")
		}
		return printChannels(stdout, resp.GetChannels()...)
	})
}

// channelSwitch runs "channel degrade NAME" and "channel restore NAME".
func channelSwitch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "degrade" && args[0] != "restore" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-help" || args[0] == "-h" || args[0] == "--h") {
			fmt.Fprintf(stderr, "usage: %s\n       %s\n", paymentUsage["channel degrade"], paymentUsage["channel restore"])
			return 0
		}
		fmt.Fprintf(stderr, "channel: want degrade or restore\nusage: %s\n       %s\n", paymentUsage["channel degrade"],
			paymentUsage["channel restore"])
		return 2
	}
	c := newPayCmd("channel "+args[0], stdout, stderr)
	if code := c.parse(args[1:]); code >= 0 {
		return code
	}
	if len(c.args) != 1 || c.args[0] == "" {
		return c.fail("want one channel name, not %q", c.args)
	}
	name := c.args[0]
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: name, Degraded: args[0] == "degrade"})
		if err != nil {
			return c.rpcError(err, fmt.Sprintf("no payment channel %q", name))
		}
		return printChannels(stdout, resp.GetStatus())
	})
}

func printChannels(stdout io.Writer, chans ...*ledgerv1.ChannelStatus) int {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tDEGRADED\tCIRCUIT\tIN FLIGHT\tQUEUED")
	for _, s := range chans {
		fmt.Fprintf(w, "%s\t%t\t%s\t%d\t%d\n", cell(s.GetName()), s.GetDegraded(),
			enumName(s.GetCircuit().String(), "CIRCUIT_STATE_"), s.GetInFlight(), s.GetQueued())
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	return 0
}

// orders looks orders up by id or by business id and prints them and their exceptions.
// Exit 1 when an id (or the business id) has no order.
func orders(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("orders", stdout, stderr)
	biz := c.fs.String("biz-id", "", "the orders of this business id (instead of ids)")
	limit := c.fs.Uint("limit", 100, "--biz-id: at most this many orders (1 to 1000)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	ids := make([]uint64, 0, len(c.args))
	for _, a := range c.args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return c.fail("%q is not an order id", a)
		}
		ids = append(ids, id)
	}
	switch {
	case *biz == "" && len(ids) == 0:
		return c.fail("give order ids or --biz-id")
	case *biz != "" && len(ids) > 0:
		return c.fail("give order ids or --biz-id, not both")
	case *limit == 0 || *limit > 1000:
		return c.fail("--limit must be 1 to 1000, not %d", *limit)
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		var found []*ledgerv1.PaymentOrder
		if *biz != "" {
			resp, err := pc.GetOrdersByBizId(ctx, &ledgerv1.GetOrdersByBizIdRequest{BizId: *biz, Limit: uint32(*limit)})
			if err != nil {
				return c.rpcError(err, "")
			}
			found = resp.GetOrders()
		} else {
			resp, err := pc.GetOrders(ctx, &ledgerv1.GetOrdersRequest{Ids: ids})
			if err != nil {
				return c.rpcError(err, "")
			}
			found = resp.GetOrders()
		}
		if code := printOrders(stdout, found); code != 0 {
			return code
		}
		switch {
		case *biz != "" && len(found) == 0:
			fmt.Fprintf(stderr, "orders: no order with biz id %q\n", *biz)
			return 1
		case len(found) < len(ids):
			fmt.Fprintf(stderr, "orders: %d of %d not found\n", len(ids)-len(found), len(ids))
			return 1
		}
		return 0
	})
}

// recon reconciles a business id: its orders, their channel outcomes and the ledger
// transfers carrying it. Exit 0: they agree; 1: differences (one a line); 2: could not run.
func recon(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("recon", stdout, stderr)
	biz := c.fs.String("biz-id", "", "the business id to reconcile")
	follow := c.fs.Bool("follow", false, "follow the event stream and print what is unmatched when each biz id's window closes, until interrupted (records nothing: the operator's view; ledgerd --recon-follow records findings)")
	from := c.fs.Uint64("from", 0, "--follow: the first event sequence to read (0: the oldest kept)")
	window := c.fs.Duration("window", time.Duration(reconlib.WindowDefault), "--follow: the window on event time from a biz id's first event (1s to 24h)")
	grace := c.fs.Duration("grace", 5*time.Second, "--follow: how long past a window's end an idle stream waits for the wall clock (0 to 1h)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	switch {
	case len(c.args) > 0:
		return c.fail("unexpected arguments %q", c.args)
	case *follow && *biz != "":
		return c.fail("give --biz-id or --follow, not both")
	case *follow:
		return reconFollow(c, followConfig{from: *from, window: *window, grace: *grace, tick: followTick,
			now: func() uint64 { return uint64(time.Now().UnixNano()) }})
	case *from != 0:
		return c.fail("--from needs --follow")
	case *biz == "":
		return c.fail("--biz-id is required (or --follow)")
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ReconcileBizId(ctx, &ledgerv1.ReconcileBizIdRequest{BizId: *biz})
		if err != nil {
			return c.rpcError(err, "")
		}
		fmt.Fprintf(stdout, "biz id %q: %d orders, %d ledger transfers\n", *biz, resp.GetOrders(), resp.GetTransfers())
		total := max(resp.GetDifferencesTotal(), uint32(len(resp.GetDifferences())))
		if total == 0 {
			fmt.Fprintln(stdout, "agree: no difference")
			return 0
		}
		fmt.Fprintf(stdout, "%d differences (amounts in minor units):\n", total)
		for _, d := range resp.GetDifferences() {
			fmt.Fprintf(stdout, "  %s\n", cell(d))
		}
		if n := int(total) - len(resp.GetDifferences()); n > 0 {
			fmt.Fprintf(stdout, "  ... and %d more\n", n)
		}
		return 1
	})
}

// printOrders prints orders as a table, their amounts in their currency (minor units when the
// server names none: currency "-"), then their exception records.
func printOrders(stdout io.Writer, orders []*ledgerv1.PaymentOrder) int {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	rows := [][]string{{"ID", "FORM", "STATE", "RESULT", "AMOUNT", "CURRENCY", "CHANNEL", "CHANNEL ORDER NO", "TXN", "BIZ ID", "FLAGGED"}}
	var excs []*ledgerv1.PaymentException
	for _, o := range orders {
		cur := money.Of(o.GetCurrency())
		rows = append(rows, []string{strconv.FormatUint(o.GetId(), 10),
			enumName(o.GetForm().String(), "PAYMENT_FORM_"), enumName(o.GetState().String(), "PAYMENT_STATE_"),
			enumName(o.GetResult().String(), "PAYMENT_RESULT_"), cur.FormatUint64(o.GetAmount()), cur.Label(), cell(o.GetChannel()),
			cell(o.GetChannelOrderNo()), cell(o.GetChannelTxn()), cell(o.GetBizId()), strconv.FormatBool(o.GetFlagged())})
		excs = append(excs, o.GetExceptions()...)
	}
	accounting.AlignRight(rows, 4)
	for _, row := range rows {
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	if len(excs) == 0 {
		return 0
	}
	fmt.Fprintln(stdout)
	return printExceptions(stdout, excs)
}

// exceptions lists exception records, a page at a time.
func exceptions(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("exceptions", stdout, stderr)
	all := c.fs.Bool("all", false, "list resolved records too")
	after := c.fs.Uint64("after", 0, "only records of orders with a greater id (the previous page's last)")
	limit := c.fs.Uint("limit", 100, "at most this many orders, each with all its records (1 to 1000); with --statements, records")
	stmts := c.fs.Bool("statements", false, "list the records of channel statement imports instead of the orders'")
	afterCh := c.fs.String("after-channel", "", "with --statements: only records after this channel's --after-date --after-txn")
	afterDate := c.fs.String("after-date", "", "with --statements: see --after-channel")
	afterTxn := c.fs.String("after-txn", "", "with --statements: see --after-channel")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) > 0 {
		return c.fail("unexpected arguments %q", c.args)
	}
	if *limit == 0 || *limit > 1000 {
		return c.fail("--limit must be 1 to 1000, not %d", *limit)
	}
	if *stmts {
		var after *ledgerv1.StatementKey
		if *afterCh != "" {
			after = &ledgerv1.StatementKey{Channel: *afterCh, Date: *afterDate, Txn: *afterTxn}
		}
		return statementExceptions(c, *all, *limit, after)
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ListExceptions(ctx, &ledgerv1.ListExceptionsRequest{IncludeResolved: *all, AfterOrderId: *after,
			Limit: uint32(*limit)})
		if err != nil {
			return c.rpcError(err, "")
		}
		if code := printExceptions(stdout, resp.GetExceptions()); code != 0 {
			return code
		}
		if next := resp.GetNextAfterOrderId(); next != 0 {
			fmt.Fprintf(stderr, "more: ledgerctl exceptions --after %d\n", next)
		}
		return 0
	})
}

// printExceptions prints exception records as a table, their amounts in their order's currency
// (minor units when the server names none: currency "-").
func printExceptions(stdout io.Writer, excs []*ledgerv1.PaymentException) int {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	rows := [][]string{{"ORDER", "INDEX", "KIND", "STATE", "TXN", "AMOUNT", "CURRENCY", "NOTE", "BIZ ID"}}
	for _, x := range excs {
		cur := money.Of(x.GetCurrency())
		rows = append(rows, []string{strconv.FormatUint(x.GetOrderId(), 10), strconv.FormatUint(uint64(x.GetIndex()), 10),
			enumName(x.GetKind().String(), "EXCEPTION_KIND_"), enumName(x.GetState().String(), "EXCEPTION_STATE_"),
			cell(x.GetTxn()), cur.FormatUint64(x.GetAmount()), cur.Label(), cell(x.GetNote()), cell(x.GetBizId())})
	}
	accounting.AlignRight(rows, 5)
	for _, row := range rows {
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	if err := w.Flush(); err != nil {
		return 2
	}
	return 0
}

// resolve applies an operator's resolution to an exception record. Exit 1 when the result is
// not ok (printed on stderr).
func resolve(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("resolve", stdout, stderr)
	note := c.fs.String("note", "", "the operator's note, kept on the record (at most 256 bytes)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) != 3 {
		return c.fail("want ORDER INDEX refund|close, not %q", c.args)
	}
	id, err := strconv.ParseUint(c.args[0], 10, 64)
	if err != nil || id == 0 {
		return c.fail("%q is not an order id", c.args[0])
	}
	index, err := strconv.ParseUint(c.args[1], 10, 32)
	if err != nil {
		return c.fail("%q is not an exception index", c.args[1])
	}
	var how ledgerv1.Resolution
	switch c.args[2] {
	case "refund":
		how = ledgerv1.Resolution_RESOLUTION_REFUND
	case "close":
		how = ledgerv1.Resolution_RESOLUTION_CLOSE
	default:
		return c.fail("resolution %q: want refund or close", c.args[2])
	}
	return c.call(func(ctx context.Context, pc ledgerv1.PaymentServiceClient) int {
		resp, err := pc.ResolveException(ctx, &ledgerv1.ResolveExceptionRequest{OrderId: id, Index: uint32(index),
			Resolution: how, Note: *note})
		if err != nil {
			return c.rpcError(err, "")
		}
		res := enumName(resp.GetResult().String(), "PAYMENT_RESULT_")
		if resp.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_OK {
			fmt.Fprintf(stderr, "resolve: order %d exception %d: %s\n", id, index, res)
			return 1
		}
		fmt.Fprintln(stdout, res)
		return 0
	})
}

// enumName is a proto enum value's name as the payment layer spells it: without its prefix,
// lower case ("-" for UNSPECIFIED).
func enumName(name, prefix string) string {
	name = strings.ToLower(strings.TrimPrefix(name, prefix))
	if name == "unspecified" {
		return "-"
	}
	return name
}

// cell is a string as a table cell: "-" when empty, tabs and line breaks (which would break
// the table) as spaces.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' {
			return ' '
		}
		return r
	}, s)
}
