package testsupport

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"postoffice/internal/config"
)

// Config returns the configuration of a whole server under test: the
// defaults, with SMTP, POP3, IMAP and HTTP listening on loopback port 0, a fresh
// mailbox directory, the host name mx.test and failed-login delays of 1 ms.
// A test changes what it needs before passing it to StartServer.
func Config(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.SMTPAddr, cfg.POP3Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.IMAPAddr = "127.0.0.1:0"
	cfg.MailboxDir = filepath.Join(t.TempDir(), "mail")
	cfg.Hostname = "mx.test"
	cfg.AuthDelay, cfg.AuthMaxDelay = time.Millisecond, time.Millisecond
	return cfg
}

// StartServer makes a whole server from cfg with newServer (server.New),
// logging nowhere, and starts it as Start does.
func StartServer[S Starter](t testing.TB, cfg config.Config, newServer func(config.Config, *slog.Logger) (S, error)) S {
	t.Helper()
	s, err := newServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	Start(t, s)
	return s
}
