// Package logging builds the one slog handler a command logs through, in the format and at
// the level its flags chose, and routes the other loggers of the process to it: the standard
// library's log package (slog.SetDefault does that), gRPC's grpclog, and, through Demote,
// the libraries whose routine chatter belongs at debug level (Proto.Actor).
//
// Durations print as durations ("1.5s") in both formats: slog's JSON handler writes a
// time.Duration as an integer of nanoseconds, which nobody reading a log wants.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc/grpclog"
)

// Formats are the values of a command's --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New makes a logger writing to w in format (text or json) from level on (debug, info, warn,
// error, or an offset such as warn+2, as slog.Level reads it).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: durationText}
	switch format {
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be %s or %s, not %q", FormatText, FormatJSON, format)
}

// Setup makes New's logger the process's default (slog's and the log package's) and gRPC's.
// It is for a command's main: gRPC's logger may be set only before gRPC is used.
func Setup(w io.Writer, format, level string) (*slog.Logger, error) {
	log, err := New(w, format, level)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	grpclog.SetLoggerV2(grpcLogger{log.With("component", "grpc")})
	return log, nil
}

// FlagValues finds --log-format and --log-level in a command's arguments before they are
// parsed (text and info when absent), so that a mistake in any other flag can be logged in
// the format asked for.
func FlagValues(args []string) (format, level string) {
	format, level = FormatText, "info"
	for i, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(args) {
			value = args[i+1]
		}
		switch name {
		case "log-format":
			format = value
		case "log-level":
			level = value
		}
	}
	return format, level
}

// durationText writes a duration as time.Duration's String does.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// Demote hands h the records of a library that logs its routine events (an actor system
// started, a dead letter) at info: below slog.LevelError they are logged at debug level, so
// they show only with --log-level debug; errors stay errors.
func Demote(h slog.Handler) slog.Handler { return demoted{h} }

type demoted struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelError {
		return slog.LevelDebug
	}
	return l
}

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, demote(l)) }

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(name string) slog.Handler    { return demoted{d.h.WithGroup(name)} }

// grpcLogger is grpclog.LoggerV2 over slog. gRPC's own default logs only errors; its info
// and warnings (connection attempts, a client going away) are logged at debug level here.
type grpcLogger struct{ log *slog.Logger }

func (g grpcLogger) Info(args ...any)                    { g.log.Debug(fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any)                  { g.log.Debug(sprintln(args)) }
func (g grpcLogger) Infof(format string, args ...any)    { g.log.Debug(fmt.Sprintf(format, args...)) }
func (g grpcLogger) Warning(args ...any)                 { g.log.Debug(fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any)               { g.log.Debug(sprintln(args)) }
func (g grpcLogger) Warningf(format string, args ...any) { g.log.Debug(fmt.Sprintf(format, args...)) }
func (g grpcLogger) Error(args ...any)                   { g.log.Error(fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any)                 { g.log.Error(sprintln(args)) }
func (g grpcLogger) Errorf(format string, args ...any)   { g.log.Error(fmt.Sprintf(format, args...)) }
func (g grpcLogger) Fatal(args ...any)                   { g.fatal(fmt.Sprint(args...)) }
func (g grpcLogger) Fatalln(args ...any)                 { g.fatal(sprintln(args)) }
func (g grpcLogger) Fatalf(format string, args ...any)   { g.fatal(fmt.Sprintf(format, args...)) }

// V answers whether gRPC's verbose logging (levels above 0) is on: never.
func (g grpcLogger) V(l int) bool { return l <= 0 }

// fatal logs and exits as gRPC's own logger does.
func (g grpcLogger) fatal(msg string) {
	g.log.Error(msg)
	os.Exit(1)
}

// sprintln is fmt.Sprintln without its newline (a record is one line).
func sprintln(args []any) string {
	s := fmt.Sprintln(args...)
	return s[:len(s)-1]
}
