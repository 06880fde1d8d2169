package config

import (
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestProxySettings: --proxy-protocol and --proxy-trusted from flags,
// POSTOFFICE_* variables and the TOML file (as arrays or one string).
func TestProxySettings(t *testing.T) {
	c, err := Parse("t", []string{"--proxy-protocol", "SMTP, pop3,http", "--proxy-trusted", "10.0.0.0/8,192.0.2.1"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.ProxyProtocol, ",") != "smtp,pop3,http" || !c.ProxyEnabled("pop3") || c.ProxyEnabled("imap") {
		t.Errorf("proxy-protocol = %v", c.ProxyProtocol)
	}
	if len(c.ProxyTrusted) != 2 || !c.ProxyTrusted.Contains(netip.MustParseAddr("10.1.2.3")) ||
		!c.ProxyTrusted.Contains(netip.MustParseAddr("192.0.2.1")) || c.ProxyTrusted.Contains(netip.MustParseAddr("192.0.2.2")) {
		t.Errorf("proxy-trusted = %v", c.ProxyTrusted)
	}
	if c.ProxyHeaderTimeout != 5*time.Second {
		t.Errorf("default header timeout = %v", c.ProxyHeaderTimeout)
	}

	c, err = Parse("t", nil, env(map[string]string{
		"POSTOFFICE_PROXY_PROTOCOL":       "imap",
		"POSTOFFICE_PROXY_TRUSTED":        "2001:db8::/32",
		"POSTOFFICE_PROXY_HEADER_TIMEOUT": "2s",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.ProxyEnabled("imap") || !c.ProxyTrusted.Contains(netip.MustParseAddr("2001:db8::7")) || c.ProxyHeaderTimeout != 2*time.Second {
		t.Errorf("from the environment: %v %v %v", c.ProxyProtocol, c.ProxyTrusted, c.ProxyHeaderTimeout)
	}

	file := writeFile(t, `proxy-protocol = ["smtp", "imap"]
proxy-trusted = "192.0.2.0/24"
`)
	c, err = Parse("t", []string{"--config", file}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.ProxyProtocol, ",") != "smtp,imap" || !c.ProxyTrusted.Contains(netip.MustParseAddr("192.0.2.77")) {
		t.Errorf("from the file: %v %v", c.ProxyProtocol, c.ProxyTrusted)
	}

	// Off by default.
	c, err = Parse("t", nil, env(nil), io.Discard)
	if err != nil || len(c.ProxyProtocol) != 0 || c.ProxyEnabled("smtp") {
		t.Errorf("default: %v, %v", c.ProxyProtocol, err)
	}
}

// TestProxyValidation: every bad combination is refused with one line
// naming the setting and what is wrong.
func TestProxyValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-protocol", "smtp"}, "--proxy-trusted: is required with --proxy-protocol"},
		{[]string{"--proxy-trusted", "10.0.0.1"}, "--proxy-trusted: has no effect without --proxy-protocol"},
		{[]string{"--proxy-protocol", "ftp", "--proxy-trusted", "10.0.0.1"}, `--proxy-protocol: "ftp" is not a listener (use smtp, smtps, pop3, pop3s, imap, imaps, http)`},
		{[]string{"--proxy-protocol", "smtp,smtp", "--proxy-trusted", "10.0.0.1"}, `"smtp" is listed twice`},
		{[]string{"--proxy-protocol", "smtps", "--proxy-trusted", "10.0.0.1"}, "names smtps, but --smtps-addr is empty"},
		{[]string{"--proxy-protocol", "http", "--http-addr", "", "--proxy-trusted", "10.0.0.1"}, "names http, but --http-addr is empty"},
		{[]string{"--proxy-protocol", "smtp", "--proxy-trusted", "10.0.0.300"}, `proxy-trusted: "10.0.0.300" is not an address or CIDR prefix`},
		{[]string{"--proxy-protocol", "smtp", "--proxy-trusted", "lb.example"}, `"lb.example" is not an address or CIDR prefix`},
		{[]string{"--proxy-protocol", "smtp", "--proxy-trusted", "10.0.0.1", "--proxy-header-timeout", "0s"}, "--proxy-header-timeout: must be positive"},
		{[]string{"--proxy-protocol", "smtp", "--proxy-trusted", "10.0.0.1", "--proxy-header-timeout", "1h"}, "--proxy-header-timeout: 1h0m0s is above 5m"},
	} {
		_, err := Parse("t", tc.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want mention of %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error is not one line: %q", tc.args, err)
		}
	}
	file := writeFile(t, "proxy-protocol = \"pop3\"\n")
	if _, err := Parse("t", []string{"--config", file}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "proxy-trusted") {
		t.Errorf("file without proxy-trusted: %v", err)
	}
}
