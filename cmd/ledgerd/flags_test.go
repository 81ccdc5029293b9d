package main

import (
	"errors"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/internal/procs"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/nrtrecon"
	"github.com/ledgercore/ledger/storage"
)

func TestFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil || c.dataDir != "./data" || c.listen != "127.0.0.1:7070" || c.metricsListen != "127.0.0.1:9464" ||
		c.shards != 0 || c.pprof || c.clockSkewMax != actors.ClockSkewMaxDefault || c.backgroundNice != storage.BackgroundNiceDefault || c.extraProcs != procs.ExtraDefault ||
		c.pieceTransfers != driver.PieceEventsDefault || c.roundsInFlight != driver.RoundsInFlightDefault {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for _, args := range [][]string{{"--shards", "300"}, {"--shards", "-1"}, {"--shard-requests-max", "0"},
		{"--hot-flush-interval", "0s"}, {"--hot-flush-interval", "2m"}, {"--hot-buffer-legs", "0"},
		{"--background-nice", "-1"}, {"--background-nice", "20"}, {"--extra-procs", "-1"}, {"--extra-procs", "65"},
		{"--piece-transfers", "0"}, {"--piece-transfers", "8191"}, {"--rounds-in-flight", "0"}, {"--rounds-in-flight", "3"},
		{"--clock-skew-max", "99ms"}, {"--clock-skew-max", "61m"}, {"--clock-skew-max", "-5s"},
		{"extra"}, {"--bogus"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	for _, d := range []time.Duration{100 * time.Millisecond, 30 * time.Second, time.Hour} {
		if c, err := parseFlags([]string{"--clock-skew-max", d.String()}); err != nil || c.clockSkewMax != d {
			t.Errorf("--clock-skew-max %v: %v %v", d, c.clockSkewMax, err)
		}
	}
	if c.eventsRetain != events.RetainEventsDefault || c.events.url != "" || c.events.stream != "LEDGER_EVENTS" ||
		c.events.subject != "ledger.events" {
		t.Errorf("event stream defaults: %d %+v", c.eventsRetain, c.events)
	}
	if c, err := parseFlags([]string{"--events-retain", "0", "--events-nats", "nats://127.0.0.1:4222"}); err != nil ||
		c.eventsRetain != 0 || c.events.url != "nats://127.0.0.1:4222" {
		t.Errorf("event stream flags: %+v %v", c, err)
	}
	if _, err := parseFlags([]string{"--events-retain", "-1"}); err == nil {
		t.Error("--events-retain -1 accepted")
	}
	if c.recon.holdMax != nrtrecon.HoldMaxDefault {
		t.Errorf("--recon-hold-max default %d", c.recon.holdMax)
	}
	if c, err := parseFlags([]string{"--recon-follow", "--recon-hold-max", "7"}); err != nil || c.recon.holdMax != 7 {
		t.Errorf("--recon-hold-max 7: %d %v", c.recon.holdMax, err)
	}
	if _, err := parseFlags([]string{"--recon-follow", "--recon-hold-max", "0"}); err == nil {
		t.Error("--recon-hold-max 0 accepted")
	}
	for _, args := range [][]string{{"--data-dir", "d", "--backup-root", "d/backups"}, {"--data-dir", "d", "--backup-root", "d"},
		{"--data-dir", "./d/", "--backup-root", "d/x/../b"}, {"--data-dir", "backups/nightly", "--backup-root", "backups"},
		{"--data-dir", "/srv/ledger/data", "--backup-root", "/srv/ledger"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q: a backup root inside the store accepted", args)
		}
	}
	if c, err := parseFlags([]string{"--data-dir", "d", "--backup-root", "d-backups"}); err != nil || !filepath.IsAbs(c.backupRoot) {
		t.Errorf("--backup-root beside the store: %q %v", c.backupRoot, err)
	}
	if c, err := parseFlags(nil); err != nil || c.backupRoot != "" {
		t.Errorf("--backup-root by default (off): %q %v", c.backupRoot, err)
	}
	if _, err := parseFlags([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if c, err := parseFlags([]string{"--first-day", "2026-01-31"}); err != nil || c.firstDay.String() != "2026-01-31" {
		t.Errorf("--first-day: %v %v", c.firstDay, err)
	}
	for _, bad := range []string{"2026-02-30", "9999-12-31"} {
		if _, err := parseFlags([]string{"--first-day", bad}); err == nil {
			t.Errorf("--first-day %s accepted", bad)
		}
	}
}

// TestAdminListenFlags: the admin service listens on loopback only; Verify's interval is
// bounded.
func TestAdminListenFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil || c.adminListen != "127.0.0.1:7073" || c.verifyInterval != 10*time.Second {
		t.Fatalf("defaults: %q %v %v", c.adminListen, c.verifyInterval, err)
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:7073", "localhost:7073", "127.0.0.2:1"} {
		if _, err := parseFlags([]string{"--admin-listen", addr}); err != nil {
			t.Errorf("--admin-listen %s: %v", addr, err)
		}
	}
	for _, addr := range []string{":7073", "0.0.0.0:7073", "[::]:7073", "10.0.0.1:7073", "example.com:7073", "7073"} {
		if _, err := parseFlags([]string{"--admin-listen", addr}); err == nil {
			t.Errorf("--admin-listen %s accepted", addr)
		}
	}
	for _, bad := range []string{"-1s", "25h"} {
		if _, err := parseFlags([]string{"--verify-interval", bad}); err == nil {
			t.Errorf("--verify-interval %s accepted", bad)
		}
	}
	if c, err := parseFlags([]string{"--verify-interval", "0"}); err != nil || c.verifyInterval != 0 {
		t.Errorf("--verify-interval 0: %v %v", c.verifyInterval, err)
	}
}
