package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/config"
	"postoffice/internal/store"
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
//     tmp/ to new/).
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
		{"http-addr", cfg.HTTPAddr},
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

	if cfg.MailboxDir != "" {
		for _, p := range checkMailboxDir(cfg.MailboxDir) {
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

// checkMailboxDir checks the mailbox directory (see runCheck).
func checkMailboxDir(dir string) []string {
	var problems []string
	fi, err := os.Stat(dir)
	probe := dir
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// The server creates it: check the nearest existing parent.
		probe = filepath.Dir(filepath.Clean(dir))
		for {
			pi, perr := os.Stat(probe)
			if perr == nil {
				if !pi.IsDir() {
					return []string{fmt.Sprintf("%s cannot be created: %s is not a directory", dir, probe)}
				}
				break
			}
			if next := filepath.Dir(probe); next != probe {
				probe = next
				continue
			}
			return []string{fmt.Sprintf("%s cannot be created: %v", dir, perr)}
		}
	case err != nil:
		return []string{err.Error()}
	case !fi.IsDir():
		return []string{dir + " is not a directory"}
	}
	if err := probeLink(probe); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", probe, err))
	}
	if probe != dir {
		return problems
	}
	// Every mailbox's subdirectories on the root's filesystem.
	rootDev, ok := device(fi)
	if !ok {
		return problems
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return append(problems, err.Error())
	}
	for _, e := range entries {
		if !e.IsDir() || !store.ValidMailboxName(e.Name()) {
			continue
		}
		for _, sub := range []string{"tmp", "new", "cur"} {
			p := filepath.Join(dir, e.Name(), sub)
			si, err := os.Stat(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if d, ok := device(si); ok && d != rootDev {
				problems = append(problems, fmt.Sprintf("%s is on another filesystem than %s: deliveries hard-link from tmp/ to new/", p, dir))
			}
		}
	}
	return problems
}

// probeLink creates a file in dir, hard-links it and removes both.
func probeLink(dir string) error {
	f, err := os.CreateTemp(dir, ".postoffice-check-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", unwrapSyscall(err))
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	link := name + ".link"
	if err := os.Link(name, link); err != nil {
		return fmt.Errorf("hard links do not work: %w", unwrapSyscall(err))
	}
	return os.Remove(link)
}

func device(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Dev), true
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
