package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "postoffice.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedenceTable: flag > env > file > default, for each kind of
// value, with the file named by --config or POSTOFFICE_CONFIG.
func TestPrecedenceTable(t *testing.T) {
	file := writeFile(t, `# test
smtp-addr = "127.0.0.1:1001"
pop3-addr = "127.0.0.1:1002"
max-message-size = 2097152
max-recipients = 7
smtp-require-auth = true
domain = ["A.example", "b.example"]
retention-max-age = "48h"
http-addr = "127.0.0.1:1003"
`)
	env := map[string]string{
		"POSTOFFICE_POP3_ADDR":      "127.0.0.1:2002",
		"POSTOFFICE_MAX_RECIPIENTS": "8",
	}
	args := []string{"--config", file, "--max-recipients", "9", "--http-addr", ""}
	c, err := Parse("t", args, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"file beats default", c.SMTPAddr, "127.0.0.1:1001"},
		{"env beats file", c.POP3Addr, "127.0.0.1:2002"},
		{"flag beats env and file", c.MaxRecipients, 9},
		{"empty flag beats file", c.HTTPAddr, ""},
		{"file size as a number", c.MaxMessageSize, Size(2 << 20)},
		{"file bool", c.SMTPRequireAuth, true},
		{"file array", strings.Join(c.Domains, ","), "a.example,b.example"},
		{"file duration", c.RetentionMaxAge, 48 * time.Hour},
		{"default stays", c.MaxErrors, 10},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	// The file named by the environment.
	env = map[string]string{"POSTOFFICE_CONFIG": file}
	c, err = Parse("t", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != "127.0.0.1:1001" || c.ConfigFile != file {
		t.Errorf("POSTOFFICE_CONFIG not read: %+v", c)
	}
}

func TestFileErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		text string
		want string
	}{
		{"smtp-addr = \"127.0.0.1:25\"\n\nsmtp-adr = \"x\"\n", ":3: unknown key \"smtp-adr\""},
		{"# c\nsmtp_addr = \"127.0.0.1:25\"\n", ":2: unknown key \"smtp_addr\" (keys are flag names with dashes: smtp-addr)"},
		{"[smtp]\naddr = 1\n", ":1: unknown key \"smtp\""},
		{"config = \"other.toml\"\n", ":1: unknown key \"config\""},
		{"\n\nmax-recipients = \"many\"\n", ":3: max-recipients: invalid value \"many\""},
		{"max-recipients = 1.5\n", ":1: max-recipients: unsupported value type"},
		{"smtp-addr = \n", ":1:"},
	} {
		p := writeFile(t, tc.text)
		_, err := Parse("t", []string{"--config", p}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.text, err, p+tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is not one line: %q", tc.text, err)
		}
	}
	if _, err := Parse("t", []string{"--config", "/nonexistent/po.toml"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}
}

// A value from the file that parses but fails validation is reported at
// its place in the file, as unknown keys are; the same value from a flag
// or the environment is still reported as --flag.
func TestFileValidationErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		text string
		want string
	}{
		{"# limits\nmax-errors = 5\nmax-recipients = 0\n", ":3: max-recipients: must be at least 1"},
		{"log-format = \"xml\"\n", ":1: log-format: \"xml\" is not text or json"},
		{"\nsmtp-addr = \"0.0.0.0:2525\"\n", ":2: smtp-addr: \"0.0.0.0:2525\" is reachable from other hosts"},
		{"smtp-addr = \"nope\"\n", ":1: smtp-addr: \"nope\" is not host:port"},
		{"retention-interval = \"0s\"\n", ":1: retention-interval: must be positive"},
	} {
		p := writeFile(t, tc.text)
		_, err := Parse("t", []string{"--config", p}, env(nil), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), p+tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.text, err, p+tc.want)
		}
	}
	p := writeFile(t, "max-errors = 5\n")
	_, err := Parse("t", []string{"--config", p, "--max-recipients", "0"}, env(nil), io.Discard)
	if err == nil || err.Error() != "--max-recipients: must be at least 1" {
		t.Errorf("flag value: err = %v", err)
	}
	_, err = Parse("t", []string{"--config", p}, env(map[string]string{"POSTOFFICE_MAX_RECIPIENTS": "0"}), io.Discard)
	if err == nil || err.Error() != "--max-recipients: must be at least 1" {
		t.Errorf("environment value: err = %v", err)
	}
}

func TestWriteTOMLRoundTripsAndMasks(t *testing.T) {
	c, err := Parse("t", []string{"--password", "s3cret", "--max-message-size", "10MiB", "--domain", "a.test,b.test",
		"--smtp-require-auth", "--retention-max-messages", "5", "--smtp-data-timeout", "90s"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.WriteTOML(&out, false); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Contains(text, "s3cret") || !strings.Contains(text, `password = "********"`) {
		t.Errorf("password not masked:\n%s", text)
	}
	for _, want := range []string{`max-message-size = "10MiB"`, `domain = "a.test,b.test"`, `smtp-require-auth = true`,
		`retention-max-messages = 5`, `smtp-data-timeout = "1m30s"`} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "smtp-addr") {
		t.Errorf("default printed without --all:\n%s", text)
	}
	// Read back (with the real password): same configuration.
	p := writeFile(t, strings.Replace(text, "********", "s3cret", 1))
	c2, err := Parse("t", []string{"--config", p}, env(nil), io.Discard)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	c2.ConfigFile = ""
	var a, b strings.Builder
	c.WriteTOML(&a, true)
	c2.WriteTOML(&b, true)
	if a.String() != b.String() {
		t.Errorf("round trip differs:\n%s\n---\n%s", a.String(), b.String())
	}
	if !strings.Contains(a.String(), `smtp-addr = "127.0.0.1:2525"`) || !strings.Contains(a.String(), `http-addr = "127.0.0.1:8025"`) {
		t.Errorf("--all lacks defaults:\n%s", a.String())
	}
}

func TestRetentionValidation(t *testing.T) {
	for _, args := range [][]string{
		{"--retention-max-age", "-1h"}, {"--retention-max-messages", "-1"}, {"--retention-interval", "0s"},
		{"--http-addr", "nope"},
	} {
		if _, err := Parse("t", args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err = %v", args, err)
		}
	}
}

// --metrics-token is a bearer token (RFC 6750 §2.1 b64token), masked by
// "postoffice config" as the password is; --metrics-addr is host:port.
func TestMetricsFlags(t *testing.T) {
	for _, bad := range []string{"two words", "tök", "=abc", "a\tb"} {
		if _, err := Parse("t", []string{"--metrics-token", bad}, env(nil), io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--metrics-token:") {
			t.Errorf("token %q: err = %v", bad, err)
		}
	}
	if _, err := Parse("t", []string{"--metrics-addr", "nope"}, env(nil), io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--metrics-addr:") {
		t.Errorf("--metrics-addr nope: err = %v", err)
	}
	c, err := Parse("t", nil, env(map[string]string{"POSTOFFICE_METRICS_TOKEN": "abc-123", "POSTOFFICE_METRICS_ADDR": "127.0.0.1:9325",
		"POSTOFFICE_METRICS_MAILBOX_LABELS": "true"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsToken != "abc-123" || c.MetricsAddr != "127.0.0.1:9325" || !c.MetricsMailboxLabels {
		t.Errorf("environment: %q %q %v", c.MetricsToken, c.MetricsAddr, c.MetricsMailboxLabels)
	}
	var out strings.Builder
	c.WriteTOML(&out, false)
	if strings.Contains(out.String(), "abc-123") || !strings.Contains(out.String(), `metrics-token = "********"`) {
		t.Errorf("token not masked:\n%s", out.String())
	}
}
