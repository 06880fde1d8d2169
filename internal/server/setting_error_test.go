package server

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// A value from the --config file that the server cannot use when it
// starts (a users file that does not open, an address that cannot be
// bound) is reported at its place in the file, "file:line: key: ...", as
// the file's invalid values are; the same value given as a flag is
// reported as "--flag".
func TestStartErrorsNameTheConfigFileLine(t *testing.T) {
	dir := t.TempDir()
	busy := testsupport.Listen(t) // an address nobody else can bind
	file := filepath.Join(dir, "postoffice.toml")
	toml := "hostname = \"mx.test\"\n" +
		"users-file = \"" + filepath.Join(dir, "missing", "users") + "\"\n"
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--config", file, "--mailbox-dir", filepath.Join(dir, "mail"),
		"--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"}
	cfg, err := config.Parse("t", base, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.HasPrefix(err.Error(), file+":2: users-file: ") {
		t.Fatalf("users file from the config file: %v; want %s:2: users-file: ...", err, file)
	}
	// The same setting as a flag is named as the flag.
	cfg, err = config.Parse("t", append(base, "--users-file", filepath.Join(dir, "missing", "users")), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.HasPrefix(err.Error(), "--users-file: ") {
		t.Fatalf("users file from a flag: %v; want --users-file: ...", err)
	}

	// An address from the file that cannot be bound, at Start.
	toml = "hostname = \"mx.test\"\n\nsmtp-addr = \"" + busy.Addr().String() + "\"\n"
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Parse("t", []string{"--config", file, "--mailbox-dir", filepath.Join(dir, "mail"),
		"--pop3-addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.HasPrefix(err.Error(), file+":3: smtp-addr: ") {
		t.Fatalf("busy address from the config file: %v; want %s:3: smtp-addr: ...", err, file)
	}
}
