package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRelaySettings: the release settings from flags, environment and
// file, and their validation errors naming the setting.
func TestRelaySettings(t *testing.T) {
	env := map[string]string{"POSTOFFICE_RELAY_ALLOW": "*@Example.test, ops@corp.test", "POSTOFFICE_RELAY_TIMEOUT": "5s"}
	c, err := Parse("postoffice", []string{"--relay-addr", "127.0.0.1:2526", "--relay-insecure-tls"}, func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RelayAddr != "127.0.0.1:2526" || !c.RelayInsecureTLS || c.RelayTimeout != 5*time.Second ||
		strings.Join(c.RelayAllow, ",") != "*@example.test,ops@corp.test" {
		t.Errorf("parsed %+v", c)
	}
	if d := Default(); d.RelayTimeout != 30*time.Second || len(d.RelayAllow) != 0 || d.RelayAddr != "" {
		t.Errorf("defaults: release must be off, timeout 30s: %+v", d)
	}
	file := filepath.Join(t.TempDir(), "po.toml")
	os.WriteFile(file, []byte("relay-allow = [\"*@a.test\", \"b@c.test\"]\nrelay-allow-addr = \"mx.test:25\"\n"), 0o600)
	c, err = Parse("postoffice", []string{"--config", file}, func(string) string { return "" }, nil)
	if err != nil || strings.Join(c.RelayAllow, ",") != "*@a.test,b@c.test" || strings.Join(c.RelayAllowAddr, ",") != "mx.test:25" {
		t.Errorf("from the file: %v %v %v", c.RelayAllow, c.RelayAllowAddr, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--relay-addr", "nohost"}, "--relay-addr: \"nohost\" is not host:port"},
		{[]string{"--relay-addr", ":25"}, "--relay-addr: \":25\" names no host"},
		{[]string{"--relay-allow-addr", "a.test:25,b.test"}, "--relay-allow-addr: \"b.test\" is not host:port"},
		{[]string{"--relay-allow-addr", "a.test:0"}, "--relay-allow-addr: \"a.test:0\" has an invalid port"},
		{[]string{"--relay-timeout", "0s"}, "--relay-timeout: must be positive"},
	} {
		_, err := Parse("postoffice", tc.args, func(string) string { return "" }, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
