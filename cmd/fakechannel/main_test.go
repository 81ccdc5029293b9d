package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"--help"}, &out, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if !strings.Contains(out.String(), "-dup-pay-rate") {
		t.Fatalf("usage lacks the flags:\n%s", out.String())
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"--seed", "9", "--fail-rate", "0.25", "--latency", "1s", "--sync"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Seed != 9 || o.cfg.FailRate != 0.25 || o.cfg.Latency != time.Second || !o.cfg.Sync || o.addr != "127.0.0.1:7071" {
		t.Fatalf("parsed %+v", o)
	}
	if _, err := parseFlags([]string{"extra"}, &bytes.Buffer{}); err == nil {
		t.Fatal("an argument was accepted")
	}
	var out bytes.Buffer
	if err := run([]string{"--fail-rate", "2", "--addr", "127.0.0.1:0"}, &bytes.Buffer{}, &out); err == nil || !strings.Contains(err.Error(), "fail rate") {
		t.Fatalf("--fail-rate 2: %v", err)
	}
}

func TestSecret(t *testing.T) {
	var out bytes.Buffer
	b, err := readSecret("", slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil || string(b) != demoSecret || !strings.Contains(out.String(), "DEMO SECRET") {
		t.Fatalf("no file: %q, %v, log %q", b, err, out.String())
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = readSecret(p, nil)
	if err != nil || string(b) != "s3cret" {
		t.Fatalf("readSecret = %q, %v", b, err)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecret(p, nil); err == nil {
		t.Fatal("an empty secret file was accepted")
	}
	if _, err := readSecret(filepath.Join(dir, "none"), nil); err == nil {
		t.Fatal("a missing secret file was accepted")
	}
}
