package main

import (
	"context"
	"fmt"
	"io"
	"time"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// backup has a running ledgerd write a consistent copy of its store into NAME under its
// --backup-root, and prints where and how big. Exit 0: written (and, with --verify, clean);
// 1: written, and its verification found problems (listed) or could not run; 2: not written
// (bad name, the directory exists, backups off, another backup running, ledgerd unreachable;
// a call cut off by a timeout may have written it: look in the root).
func backup(args []string, stdout, stderr io.Writer) int {
	c := newPayCmd("backup", stdout, stderr)
	verify := c.fs.Bool("verify", false, "then verify the copy (every balance recomputed from its journal, on ledgerd's host)")
	*c.timeout = time.Hour
	*c.addr = adminAddrDefault
	c.fs.Lookup("addr").DefValue, c.fs.Lookup("addr").Usage = adminAddrDefault, adminAddrHelp
	if code := c.parse(args); code >= 0 {
		return code
	}
	if len(c.args) != 1 {
		return c.fail("want one NAME, not %d arguments", len(c.args))
	}
	conn, err := dialAdmin(*c.addr, c.sec)
	if err != nil {
		fmt.Fprintf(stderr, "backup: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *c.timeout)
	defer cancel()
	resp, err := ledgerv1.NewAdminServiceClient(conn).Backup(ctx, &ledgerv1.BackupRequest{Name: c.args[0], Verify: *verify})
	if err != nil {
		return c.rpcError(err, "")
	}
	fmt.Fprintf(stdout, "backup %s: %d files, %d bytes, written in %v\n", resp.GetPath(), resp.GetFiles(), resp.GetBytes(),
		time.Duration(resp.GetMillis())*time.Millisecond)
	switch {
	case resp.GetVerifyError() != "":
		fmt.Fprintf(stdout, "written, but not verified: %s\n", resp.GetVerifyError())
		return 1
	case !resp.GetVerified():
		return 0
	case resp.GetProblemCount() == 0:
		fmt.Fprintln(stdout, "verified: clean")
		return 0
	}
	fmt.Fprintf(stdout, "verified: %d problem(s)", resp.GetProblemCount())
	if n := len(resp.GetProblems()); uint32(n) < resp.GetProblemCount() {
		fmt.Fprintf(stdout, ", the first %d:", n)
	}
	fmt.Fprintln(stdout)
	for _, p := range resp.GetProblems() {
		fmt.Fprintf(stdout, "  %s\n", p)
	}
	return 1
}
