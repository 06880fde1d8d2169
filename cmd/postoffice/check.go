package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/config"
	"postoffice/internal/store/maildir"
)

// runCheck implements "postoffice check", like "postfix check": it reads
// the configuration exactly as the server would and checks what would stop
// or break a start, printing one line per problem:
//
//   - the configuration (flags, environment, --config file) is valid;
//   - the users file loads, and names the --catch-all user;
//   - the TLS certificate and key load, match, and have not expired;
//   - every listen address can be bound (bound and closed at once: run it
//     before starting the server, whose own ports would be reported in use);
//   - the mailbox directory (or, if it does not exist yet, the directory it
//     would be created in) is a directory where a file can be created, hard
//     linked and removed, and each existing mailbox's tmp/, new/ and cur/
//     are on the filesystem of the mailbox directory (delivery links from
//     tmp/ to new/);
//   - with --store postgres, instead of the mailbox directory, the shared
//     store's engines: PostgreSQL, the schema version and the S3 bucket
//     (checkshared.go), whose notes (server version, pending migrations)
//     are printed before the outcome.
//
// It prints "ok" and exits 0 when there is no problem, else exits 1.
func runCheck(args []string, stdout, stderr io.Writer) int {
	cfg, rest, err := config.ParseArgs("postoffice check", args, nil, stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var problems []string
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err != nil {
		problems = append(problems, "config: "+err.Error())
	}
	problems = append(problems, checkFiles(cfg)...)
	if err == nil && cfg.Shared() {
		notes, more := checkShared(cfg)
		for _, n := range notes {
			fmt.Fprintln(stdout, n)
		}
		problems = append(problems, more...)
	}
	if len(problems) == 0 {
		fmt.Fprintln(stdout, "ok")
		return 0
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	return 1
}

// checkFiles runs the checks that touch the system.
func checkFiles(cfg config.Config) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	if cfg.UsersFile != "" {
		uf, err := auth.OpenUsersFile(cfg.UsersFile, slog.New(slog.DiscardHandler))
		if err != nil {
			add("users-file: %v", err)
		} else if cfg.CatchAll != "" {
			if _, ok := uf.Current().Lookup(auth.CanonicalName(cfg.CatchAll)); !ok {
				add("catch-all: %q is not a user of %s", cfg.CatchAll, cfg.UsersFile)
			}
		}
	}

	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if p := checkTLS(cfg.TLSCert, cfg.TLSKey); p != "" {
			add("tls-cert: %s", p)
		}
	}

	for _, a := range []struct{ name, addr string }{
		{"smtp-addr", cfg.SMTPAddr}, {"smtps-addr", cfg.SMTPSAddr},
		{"pop3-addr", cfg.POP3Addr}, {"pop3s-addr", cfg.POP3SAddr},
		{"imap-addr", cfg.IMAPAddr}, {"imaps-addr", cfg.IMAPSAddr},
		{"http-addr", cfg.HTTPAddr}, {"metrics-addr", cfg.MetricsAddr},
	} {
		if a.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			add("%s: cannot listen on %s: %v", a.name, a.addr, unwrapSyscall(err))
			continue
		}
		l.Close()
	}

	if cfg.MailboxDir != "" && !cfg.Shared() {
		for _, p := range maildir.Check(cfg.MailboxDir) {
			add("mailbox-dir: %s", p)
		}
	}
	return problems
}

// checkTLS loads the key pair and reports a problem, or "".
func checkTLS(certFile, keyFile string) string {
	if certFile == "" || keyFile == "" {
		return "--tls-cert and --tls-key go together"
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err.Error()
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Sprintf("%s: %v", certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return fmt.Sprintf("%s: certificate expired on %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(leaf.NotBefore) {
		return fmt.Sprintf("%s: certificate not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return ""
}

// unwrapSyscall shortens "listen tcp 1.2.3.4:25: bind: address already in
// use" style errors to their system error when there is one.
func unwrapSyscall(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
