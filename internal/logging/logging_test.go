package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDurationsPrintAsDurations(t *testing.T) {
	for _, format := range []string{FormatText, FormatJSON} {
		var out bytes.Buffer
		log, err := New(&out, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("recovered", "in", 1500*time.Millisecond, slog.Group("g", "wait", 2*time.Minute))
		if s := out.String(); !strings.Contains(s, "1.5s") || !strings.Contains(s, "2m0s") || strings.Contains(s, "1500000000") {
			t.Errorf("%s: %s", format, s)
		}
	}
	var out bytes.Buffer
	log, _ := New(&out, FormatJSON, "info")
	log.Info("x", "took", 3*time.Second)
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec["took"] != "3s" {
		t.Errorf("json: %s %v", out.String(), err)
	}
}

func TestBadFlags(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "xml", "info"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("xml: %v", err)
	}
	if _, err := New(&bytes.Buffer{}, FormatText, "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("loud: %v", err)
	}
}

func TestDemote(t *testing.T) {
	var out bytes.Buffer
	base, _ := New(&out, FormatText, "info")
	lib := slog.New(Demote(base.Handler())).With("component", "lib")
	lib.Info("actor system started")
	lib.Warn("dead letter")
	if out.Len() != 0 {
		t.Errorf("routine records at info level: %s", out.String())
	}
	lib.Error("supervision")
	if !strings.Contains(out.String(), "level=ERROR") || !strings.Contains(out.String(), "component=lib") {
		t.Errorf("error: %s", out.String())
	}
	out.Reset()
	debug, _ := New(&out, FormatText, "debug")
	slog.New(Demote(debug.Handler())).Info("actor system started")
	if !strings.Contains(out.String(), "level=DEBUG") {
		t.Errorf("debug: %s", out.String())
	}
}

func TestGRPCLogger(t *testing.T) {
	var out bytes.Buffer
	log, _ := New(&out, FormatText, "info")
	g := grpcLogger{log}
	g.Warningf("transport: %s", "closing")
	g.Infoln("a", "b")
	if out.Len() != 0 {
		t.Errorf("gRPC chatter at info level: %s", out.String())
	}
	g.Errorln("listener", "failed")
	if s := out.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, `msg="listener failed"`) {
		t.Errorf("error: %s", s)
	}
}

func TestFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		format, level string
	}{
		{nil, "text", "info"},
		{[]string{"--log-format", "json", "--bogus"}, "json", "info"},
		{[]string{"--bogus", "-log-level=debug", "--log-format=json"}, "json", "debug"},
		{[]string{"--data-dir", "--log-format", "--log-level", "warn"}, "--log-level", "warn"},
		{[]string{"--", "--log-format", "json"}, "text", "info"},
	} {
		if f, l := FlagValues(tc.args); f != tc.format || l != tc.level {
			t.Errorf("FlagValues(%q) = %s %s, want %s %s", tc.args, f, l, tc.format, tc.level)
		}
	}
}
