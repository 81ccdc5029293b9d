package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

var signalSeed = flag.Uint64("signals.seed", 1, "seed of TestProcess/Signals' delays")

// proc is a command run as a process, its stderr read line by line.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	line   chan string // every line, as it comes
	exited chan struct{}
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), line: make(chan string, 1024), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.line <- sc.Text():
			default:
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitFor waits for a line containing s and answers it; it fails the test if the process
// exits first or after 30 s.
func (p *proc) waitFor(s string) string {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-p.line:
			if strings.Contains(l, s) {
				return l
			}
		case <-p.exited:
			p.t.Fatalf("exited before %q:\n%s", s, p.log())
		case <-timeout:
			p.t.Fatalf("no %q after 30 s:\n%s", s, p.log())
		}
	}
}

// exit waits for the process to end (30 s at most) and answers its exit status (-1: killed
// by a signal).
func (p *proc) exit() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("still running after 30 s:\n%s", p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// TestProcess: ledgerd as an operator meets it. The commands are built once, together.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	pkgs := []string{"./cmd/ledgerd", "./cmd/ledgerctl", "./cmd/fakechannel", "./cmd/ledger-bench"}
	build := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	bins := map[string]string{}
	for _, pkg := range pkgs {
		bins[filepath.Base(pkg)] = filepath.Join(dir, filepath.Base(pkg))
	}
	t.Run("Signals", func(t *testing.T) { testSignals(t, bins["ledgerd"], bins["ledgerctl"]) })
	t.Run("PortTaken", func(t *testing.T) { testPortTaken(t, bins["ledgerd"]) })
	t.Run("LockedStore", func(t *testing.T) { testLockedStore(t, bins["ledgerd"], bins["ledgerctl"]) })
	t.Run("Log", func(t *testing.T) { testLog(t, bins["ledgerd"]) })
	t.Run("Help", func(t *testing.T) { testHelp(t, bins) })
}

// ledgerdArgs start ledgerd on data with every port free and the payment layer and the
// reconciliation running, so that start-up has all its steps.
func ledgerdArgs(data string, extra ...string) []string {
	return append([]string{"--data-dir", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--notify-listen", "127.0.0.1:0", "--shards", "2", "--fake-channel", "demo", "--recon-follow"}, extra...)
}

// testSignals sends SIGTERM or SIGINT at seeded delays after ledgerd's first log line (the
// signal handler is in place from then on): during the store's open, recovery, the payment
// layer's start, or just after "serving" (the moment a SIGTERM once killed the process, 11
// times in 60). Every stop is clean: exit 0, "ledgerd stopped" logged (after the store
// closed), and the next start opens the store; at the end the store verifies clean.
func testSignals(t *testing.T, ledgerd, ledgerctl string) {
	data := filepath.Join(t.TempDir(), "data")
	// A store with something in it, and how long a start takes to serve (the delays' range).
	p := startProc(t, ledgerd, ledgerdArgs(data)...)
	began := time.Now()
	p.waitFor("ledgerd starting")
	serving := p.waitFor("ledgerd serving")
	startup := time.Since(began)
	c, _, closeConn := dial(t, &server{addr: addrPattern.FindStringSubmatch(serving)[1]})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.CreateAccounts(ctx, &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 1, Ledger: 1, Code: 1}, {Id: 2, Ledger: 1, Code: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{
		{Id: 9, DebitAccountId: 1, CreditAccountId: 2, Amount: 7, Ledger: 1, Code: 1}}}); err != nil {
		t.Fatal(err)
	}
	closeConn()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exit(); code != 0 {
		t.Fatalf("first stop: exit %d\n%s", code, p.log())
	}
	rng := rand.New(rand.NewPCG(*signalSeed, 0))
	t.Logf("seed %d (-signals.seed), start-up %v", *signalSeed, startup)
	const tries = 16
	before := 0
	for try := range tries {
		sig := []os.Signal{syscall.SIGTERM, syscall.SIGINT}[try%2]
		p := startProc(t, ledgerd, ledgerdArgs(data)...)
		p.waitFor("ledgerd starting")
		var delay time.Duration
		if try%4 == 3 {
			p.waitFor("ledgerd serving")
			delay = time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
		} else {
			delay = time.Duration(rng.Int64N(int64(startup + startup/4)))
		}
		time.Sleep(delay)
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		code := p.exit()
		log := p.log()
		if code != 0 || !strings.Contains(log, "ledgerd stopped") {
			t.Fatalf("try %d (%v after %v): exit %d\n%s", try, sig, delay, code, log)
		}
		if strings.Contains(log, "stopping before serving") {
			before++
		}
	}
	t.Logf("%d of %d signals came before serving", before, tries)
	out, err := exec.Command(ledgerctl, "verify", "--data-dir", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": 0 problems") {
		t.Fatalf("ledgerctl verify --data-dir: %v\n%s", err, out)
	}
}

// testPortTaken: a start that fails on a port taken (each of the four) creates no store.
func testPortTaken(t *testing.T, ledgerd string) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, flag := range []string{"--listen", "--admin-listen", "--metrics-listen", "--notify-listen"} {
		data := filepath.Join(t.TempDir(), "data")
		p := startProc(t, ledgerd, ledgerdArgs(data, flag, taken.Addr().String())...)
		if code := p.exit(); code != 1 || !strings.Contains(p.log(), flag+": listen tcp") ||
			!strings.Contains(p.log(), "address already in use") {
			t.Errorf("%s taken: exit %d\n%s", flag, code, p.log())
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("%s taken: the store was created (%v)", flag, err)
		}
	}
}

// testLockedStore: a second ledgerd on a store in use, and ledgerctl verify --data-dir on
// it, say that another process holds it and what to do instead.
func testLockedStore(t *testing.T, ledgerd, ledgerctl string) {
	data := filepath.Join(t.TempDir(), "data")
	first := startProc(t, ledgerd, ledgerdArgs(data)...)
	first.waitFor("ledgerd serving")
	second := startProc(t, ledgerd, ledgerdArgs(data)...)
	if code := second.exit(); code != 1 || !strings.Contains(second.log(), "another process holds the store") ||
		!strings.Contains(second.log(), "another --data-dir") {
		t.Errorf("second ledgerd: exit %d\n%s", code, second.log())
	}
	cmd := exec.Command(ledgerctl, "verify", "--data-dir", data)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "another process holds the store") ||
		!strings.Contains(string(out), "--addr") {
		t.Errorf("ledgerctl verify --data-dir: exit %d\n%s", code, out)
	}
	_ = first.cmd.Process.Signal(syscall.SIGTERM)
	if code := first.exit(); code != 0 {
		t.Errorf("first ledgerd: exit %d\n%s", code, first.log())
	}
}

// testLog: with --log-format json every line is JSON, Proto.Actor's and Pebble's included
// (at debug level), durations read as durations, and the serving line names the ports
// bound; a bad flag is logged the same way (exit 2).
func testLog(t *testing.T, ledgerd string) {
	p := startProc(t, ledgerd, ledgerdArgs(filepath.Join(t.TempDir(), "data"), "--log-format", "json", "--log-level", "debug")...)
	p.waitFor("ledgerd serving")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exit(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.log())
	}
	components := map[string]bool{}
	for _, line := range strings.Split(p.log(), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %s", line)
			continue
		}
		if c, ok := rec["component"].(string); ok && rec["level"] == "DEBUG" {
			components[c] = true
		}
		if rec["msg"] != "ledgerd serving" {
			continue
		}
		for _, key := range []string{"grpc", "metrics", "notify"} {
			if addr, _ := rec[key].(string); !regexp.MustCompile(`^127\.0\.0\.1:[1-9][0-9]*$`).MatchString(addr) {
				t.Errorf("serving: %s %q is not the bound address", key, addr)
			}
		}
		if d, _ := rec["recovered_in"].(string); func() error { _, err := time.ParseDuration(d); return err }() != nil {
			t.Errorf("recovered_in %v is not a duration", rec["recovered_in"])
		}
	}
	for _, c := range []string{"protoactor", "pebble"} {
		if !components[c] {
			t.Errorf("no %s line at debug level:\n%s", c, p.log())
		}
	}
	p = startProc(t, ledgerd, "--log-format", "json", "--bogus")
	if code := p.exit(); code != 2 || !strings.Contains(p.log(), `"level":"ERROR"`) || !strings.Contains(p.log(), "-bogus") {
		t.Errorf("a bad flag: exit %d\n%s", code, p.log())
	}
}

// testHelp: --help exits 0 for every command, and for every subcommand ledgerctl's usage
// lists, printing its usage and no log line; the README documents every flag of ledgerd and
// fakechannel.
func testHelp(t *testing.T, bins map[string]string) {
	run := func(bin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bins[bin], args...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "usage") && !strings.Contains(string(out), "Usage") ||
			strings.Contains(string(out), "level=") {
			t.Errorf("%s %q: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagName := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, bin := range []string{"ledgerd", "fakechannel"} {
		for _, m := range flagName.FindAllStringSubmatch(run(bin, "--help"), -1) {
			if !strings.Contains(string(readme), "`--"+m[1]+"`") {
				t.Errorf("the README does not document %s --%s", bin, m[1])
			}
		}
	}
	run("ledgerd", "-h")
	run("ledger-bench", "--help")
	usage := run("ledgerctl", "--help")
	run("ledgerctl", "help")
	var subs []string
	for _, m := range regexp.MustCompile(`(?m)^  ledgerctl ([a-z-]+)`).FindAllStringSubmatch(usage, -1) {
		if !slices.Contains(subs, m[1]) {
			subs = append(subs, m[1])
		}
	}
	if len(subs) < 15 {
		t.Fatalf("ledgerctl's usage lists %d subcommands:\n%s", len(subs), usage)
	}
	for _, sub := range append(subs, "channel degrade", "channel restore") {
		run("ledgerctl", append(strings.Fields(sub), "--help")...)
	}
}
