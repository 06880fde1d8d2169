// Command postoffice is a mail server: it accepts mail over SMTP, keeps each
// message as an .eml file in a Maildir and serves it over POP3.
//
// Usage:
//
//	postoffice [serve] [flags]     run the server (the default)
//	postoffice user add|passwd|del|list ...
//	postoffice config [--all] [flags]
//	postoffice check [flags]
//	postoffice mailbox list|show|purge [flags] [USER]
//	postoffice migrate --from maildir|postgres --to postgres|maildir [flags]
//	postoffice version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"postoffice/internal/config"
	"postoffice/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "user":
		return runUser(args, stdin, stdout, stderr)
	case "config":
		return runConfig(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "mailbox":
		return runMailbox(args, stdin, stdout, stderr)
	case "migrate":
		return runMigrate(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help":
		fmt.Fprint(stdout, topUsage)
		return 0
	}
	fmt.Fprintf(stderr, "postoffice: unknown command %q\n\n%s", cmd, topUsage)
	return 2
}

const topUsage = `Usage:
  postoffice [serve] [flags]               run the SMTP and POP3 server (default)
  postoffice user add|passwd|del|list ...  manage the users file
  postoffice config [--all] [flags]        print the effective configuration (TOML)
  postoffice check [flags]                 check configuration, files, ports, mailbox directory
  postoffice mailbox list|show|purge ...   inspect or empty mailboxes
  postoffice migrate --from X --to Y ...   move mailboxes between the Maildir and the shared store
  postoffice version                       print version information

Run "postoffice serve --help" for the server's flags.
`

func serve(args []string, stderr io.Writer) int {
	cfg, err := config.Parse("postoffice serve", args, nil, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "postoffice: %v\n", err)
		return 2
	}
	// Signals are caught before the listeners open: a SIGTERM that comes as
	// soon as the server is reachable must drain it, not kill it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	logger := newLogger(cfg, stderr)
	procs := raiseProcs()
	srv, err := server.New(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "postoffice: %v\n", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintf(stderr, "postoffice: %v\n", err)
		return 1
	}
	logger.Info("postoffice started", "version", version(), "mailbox_dir", cfg.MailboxDir, "hostname", cfg.Hostname,
		"gomaxprocs", procs)

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			srv.Reload()
			continue
		}
		logger.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
		break
	}
	// A second signal while draining stops waiting.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				cancel()
			}
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	logger.Info("stopped")
	return 0
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.LogLevel) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// version is the module version from the build info ("(devel)" for a
// source build).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return bi.Main.Version
}

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "postoffice (no build info)"
	}
	commit, modified, when := "unknown", "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		case "vcs.time":
			when = " " + s.Value
		}
	}
	return fmt.Sprintf("postoffice %s commit %s%s%s %s", bi.Main.Version, commit, modified, when, bi.GoVersion)
}
