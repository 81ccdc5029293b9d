package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"google.golang.org/grpc"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/client"
)

// dial connects to ledgerd at addr with the TLS and token of sec (--token-file, --tls-ca, ...,
// or the LEDGER_* environment).
func dial(addr string, sec client.Security) (*grpc.ClientConn, error) {
	opts, err := sec.DialOptions()
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, opts...)
}

const tokenUsage = "ledgerctl token [--out FILE] ROLE NAME"

// token makes a random bearer token for a caller NAME with ROLE (reader, writer or operator)
// and prints the line to add to ledgerd's --auth-tokens file. The token itself goes to
// --out (made with mode 0600; it must not exist), or to stdout before the line. The file
// keeps only its SHA-256: a lost token cannot be recovered, only replaced.
func token(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("ledgerctl token", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprintf(fset.Output(), "usage: %s\n", tokenUsage)
		fset.PrintDefaults()
	}
	out := fset.String("out", "", "write the token to this `FILE` (mode 0600, must not exist) and print only the line for --auth-tokens")
	rest, code := parseArgs(fset, args)
	if code >= 0 {
		return code
	}
	if len(rest) != 2 {
		fmt.Fprintf(stderr, "token: want ROLE NAME\nusage: %s\n", tokenUsage)
		return 2
	}
	role, err := api.ParseRole(rest[0])
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return 2
	}
	tok, line, err := api.NewToken(role, rest[1])
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return 2
	}
	if *out == "" {
		fmt.Fprintf(stdout, "token: %s\nline:  %s\n", tok, line)
		return 0
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fmt.Fprintf(stderr, "token: %s exists; a token is never overwritten\n", *out)
		return 2
	}
	if err == nil {
		_, err = fmt.Fprintln(f, tok)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, line)
	return 0
}
