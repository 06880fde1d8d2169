package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Parse("t", nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != "127.0.0.1:2525" || c.POP3Addr != "127.0.0.1:1100" || c.MailboxDir != "./mailbox" ||
		c.DefaultUser != "user" || c.DefaultPassword != "pass" || c.MaxMessageSize != 25<<20 || c.MaxRecipients != 100 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedenceFlagOverEnvOverDefault(t *testing.T) {
	e := env(map[string]string{
		"POSTOFFICE_SMTP_ADDR":        "127.0.0.1:3000",
		"POSTOFFICE_POP3_ADDR":        "127.0.0.1:3001",
		"POSTOFFICE_MAX_MESSAGE_SIZE": "1MiB",
		"POSTOFFICE_DOMAIN":           "Example.org,b.test",
		"POSTOFFICE_TRUSTED_NETWORKS": "10.0.0.0/8",
	})
	c, err := Parse("t", []string{"--smtp-addr", "127.0.0.1:4000"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != "127.0.0.1:4000" {
		t.Errorf("flag lost to env: %s", c.SMTPAddr)
	}
	if c.POP3Addr != "127.0.0.1:3001" {
		t.Errorf("env not applied: %s", c.POP3Addr)
	}
	if c.MaxMessageSize != 1<<20 {
		t.Errorf("size = %d", c.MaxMessageSize)
	}
	if strings.Join(c.Domains, ",") != "example.org,b.test" {
		t.Errorf("domains = %v", c.Domains)
	}
	if len(c.TrustedNetworks) != 1 {
		t.Errorf("trusted = %v", c.TrustedNetworks)
	}
	if c.SMTPDataTimeout != 3*time.Minute {
		t.Errorf("default lost: %v", c.SMTPDataTimeout)
	}
	// Postfix 3.7's smtpd_min_data_rate default.
	if c.SMTPMinDataRate != 500 {
		t.Errorf("default --smtp-min-data-rate lost: %v", c.SMTPMinDataRate)
	}
}

func TestInvalidValuesNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--smtp-addr", "nope"}, nil, "--smtp-addr"},
		{[]string{"--pop3-addr", "127.0.0.1:99999"}, nil, "--pop3-addr"},
		{[]string{"--max-line-length", "100"}, nil, "--max-line-length"},
		{[]string{"--max-message-size", "12XB"}, nil, "max-message-size"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--smtps-addr", "127.0.0.1:4650"}, nil, "--smtps-addr"},
		{[]string{"--tls-cert", "c.pem"}, nil, "--tls-cert"},
		{[]string{"--catch-all", "bob"}, nil, "--catch-all"},
		{[]string{"--smtp-addr", ":2525"}, nil, "--smtp-addr"},
		{[]string{"--smtp-addr", "0.0.0.0:2525", "--pop3-addr", ""}, nil, "default credentials"},
		{[]string{"--http-addr", "0.0.0.0:8025"}, nil, "--http-addr"},
		{[]string{"--imap-addr", "0.0.0.0:1430"}, nil, "--imap-addr"},
		{[]string{"--imaps-addr", "[::]:993", "--tls-self-signed"}, nil, "--imaps-addr"},
		{[]string{"--imaps-addr", "127.0.0.1:993"}, nil, "--imaps-addr"},
		{[]string{"--imap-idle-timeout", "0s"}, nil, "--imap-idle-timeout"},
		{[]string{"--smtp-data-timeout", "0s"}, nil, "--smtp-data-timeout"},
		{[]string{"--smtp-min-data-rate", "-1"}, nil, "--smtp-min-data-rate"},
		{[]string{"--smtp-bare-newline", "yes"}, nil, "--smtp-bare-newline"},
		{nil, map[string]string{"POSTOFFICE_MAX_RECIPIENTS": "many"}, "POSTOFFICE_MAX_RECIPIENTS"},
		{[]string{"--smtp-addr", "", "--pop3-addr", "", "--imap-addr", ""}, nil, "disabled"},
		{[]string{"stray"}, nil, "unexpected argument"},
	} {
		_, err := Parse("t", tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want mention of %q", tc.args, tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error is not one line: %q", tc.args, err)
		}
	}
}

func TestInsecureAllowsPublicDefaultCredentials(t *testing.T) {
	if _, err := Parse("t", []string{"--smtp-addr", ":2525", "--insecure"}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("t", []string{"--smtp-addr", ":2525", "--users-file", "u"}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("t", []string{"--smtp-addr", "localhost:2525", "--pop3-addr", "[::1]:1100"}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestHelpListsEveryFlagWithEnv(t *testing.T) {
	var out strings.Builder
	_, err := Parse("t", []string{"--help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	c := Default()
	c.FlagSet("x", io.Discard).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "--"+f.Name+"\n") || !strings.Contains(out.String(), EnvName(f.Name)) {
			t.Errorf("help lacks %s", f.Name)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"1024": 1024, "25MiB": 25 << 20, "512k": 512 << 10, "2 GB": 2 << 30, "10b": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1TB", "99999999999999999999"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if s := Size(25 << 20).String(); s != "25MiB" {
		t.Errorf("String = %s", s)
	}
}

// Every flag has a row in the README's flag table.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.FlagSet("x", io.Discard).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(string(readme), "| `--"+f.Name+"`") && !strings.Contains(string(readme), ", `--"+f.Name+"`") {
			t.Errorf("README.md has no table row for --%s", f.Name)
		}
	})
}

// TestMinFreeSpace: --min-free-space defaults to auto, takes a size, 0
// (off) or auto, from a flag or POSTOFFICE_MIN_FREE_SPACE, and refuses
// anything else naming the flag.
func TestMinFreeSpace(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want Size
	}{
		{nil, nil, AutoMinFreeSpace},
		{[]string{"--min-free-space", "50MiB"}, nil, 50 << 20},
		{[]string{"--min-free-space", "0"}, nil, 0},
		{[]string{"--min-free-space", "auto"}, map[string]string{"POSTOFFICE_MIN_FREE_SPACE": "1GiB"}, AutoMinFreeSpace},
		{nil, map[string]string{"POSTOFFICE_MIN_FREE_SPACE": "1GiB"}, 1 << 30},
	} {
		c, err := Parse("t", tc.args, env(tc.env), io.Discard)
		if err != nil || c.MinFreeSpace != tc.want {
			t.Errorf("%v %v: %d, %v; want %d", tc.args, tc.env, c.MinFreeSpace, err, tc.want)
		}
	}
	if _, err := Parse("t", []string{"--min-free-space", "lots"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "min-free-space") {
		t.Errorf("bad value: %v", err)
	}
}

// The SMTP command-layer settings: defaults, environment and flags.
func TestSMTPCommandSettings(t *testing.T) {
	c, err := Parse("t", nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPRequireHelo || c.MaxJunkCommands != 100 {
		t.Fatalf("defaults: require-helo %v, max-junk-commands %d", c.SMTPRequireHelo, c.MaxJunkCommands)
	}
	c, err = Parse("t", nil, env(map[string]string{"POSTOFFICE_SMTP_REQUIRE_HELO": "true"}), io.Discard)
	if err != nil || !c.SMTPRequireHelo {
		t.Fatalf("env: require-helo %v, %v", c.SMTPRequireHelo, err)
	}
	c, err = Parse("t", []string{"--smtp-require-helo"}, env(nil), io.Discard)
	if err != nil || !c.SMTPRequireHelo {
		t.Fatalf("flag: require-helo %v, %v", c.SMTPRequireHelo, err)
	}
}

func TestMaxJunkCommandsSetting(t *testing.T) {
	c, err := Parse("t", nil, env(map[string]string{"POSTOFFICE_MAX_JUNK_COMMANDS": "7"}), io.Discard)
	if err != nil || c.MaxJunkCommands != 7 {
		t.Fatalf("env: %d, %v", c.MaxJunkCommands, err)
	}
	c, err = Parse("t", []string{"--max-junk-commands", "0"}, env(nil), io.Discard)
	if err != nil || c.MaxJunkCommands != 0 {
		t.Fatalf("flag 0 (no limit): %d, %v", c.MaxJunkCommands, err)
	}
	if _, err := Parse("t", []string{"--max-junk-commands", "-1"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "max-junk-commands") {
		t.Fatalf("negative accepted: %v", err)
	}
}

func TestWaitMaxAndLinkCheckAllowSettings(t *testing.T) {
	c, err := Parse("t", nil, env(nil), io.Discard)
	if err != nil || c.WaitMax != 5*time.Minute || strings.Join(c.LinkCheckAllow, ",") != "localhost,127.0.0.1,::1" {
		t.Fatalf("defaults: %v %v, %v", c.WaitMax, c.LinkCheckAllow, err)
	}
	c, err = Parse("t", []string{"--link-check-allow", "*.Test, 127.0.0.1"},
		env(map[string]string{"POSTOFFICE_WAIT_MAX": "90s"}), io.Discard)
	if err != nil || c.WaitMax != 90*time.Second || strings.Join(c.LinkCheckAllow, ",") != "*.test,127.0.0.1" {
		t.Fatalf("set: %v %v, %v", c.WaitMax, c.LinkCheckAllow, err)
	}
	c, err = Parse("t", []string{"--link-check-allow", ""}, env(nil), io.Discard)
	if err != nil || len(c.LinkCheckAllow) != 0 {
		t.Fatalf("empty: %v, %v", c.LinkCheckAllow, err)
	}
	for _, args := range [][]string{{"--wait-max", "0s"}, {"--link-check-allow", "[a-"}, {"--link-check-allow", "a/b"}} {
		if _, err := Parse("t", args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err = %v, want one naming %s", args, err, args[0])
		}
	}
}
