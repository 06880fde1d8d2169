package config

import (
	"flag"
	"slices"
	"strings"
	"time"
)

// The settings of the PROXY protocol (--proxy-*): docs/operations.md,
// "PROXY protocol".

// DefaultProxyHeaderTimeout is the default of --proxy-header-timeout.
const DefaultProxyHeaderTimeout = 5 * time.Second

// ProxyListeners are the listener names --proxy-protocol accepts.
var ProxyListeners = []string{"smtp", "smtps", "pop3", "pop3s", "imap", "imaps", "http"}

func (c *Config) proxyFlags(fs *flag.FlagSet) {
	fs.Var(listValue{&c.ProxyProtocol}, "proxy-protocol", "comma-separated listeners whose connections start with a PROXY protocol v1/v2 header: "+strings.Join(ProxyListeners, ", ")+"; empty: none")
	fs.Var(netsValue{&c.ProxyTrusted}, "proxy-trusted", "comma-separated CIDRs or addresses of the load balancers allowed to connect to the --proxy-protocol listeners (required with it); other sources are refused")
	fs.DurationVar(&c.ProxyHeaderTimeout, "proxy-header-timeout", c.ProxyHeaderTimeout, "time a connection to a --proxy-protocol listener has to send its PROXY header")
}

// ProxyEnabled reports whether the listener name (smtp, smtps, pop3,
// pop3s, imap, imaps, http) expects a PROXY header.
func (c *Config) ProxyEnabled(name string) bool {
	return slices.Contains(c.ProxyProtocol, name)
}

// listenerAddr is the address setting of a --proxy-protocol listener.
func (c *Config) listenerAddr(name string) string {
	switch name {
	case "smtp":
		return c.SMTPAddr
	case "smtps":
		return c.SMTPSAddr
	case "pop3":
		return c.POP3Addr
	case "pop3s":
		return c.POP3SAddr
	case "imap":
		return c.IMAPAddr
	case "imaps":
		return c.IMAPSAddr
	case "http":
		return c.HTTPAddr
	}
	return ""
}

func (c *Config) validateProxy(bad func(flagName, format string, a ...any) error) error {
	seen := map[string]bool{}
	for _, name := range c.ProxyProtocol {
		if !slices.Contains(ProxyListeners, name) {
			return bad("proxy-protocol", "%q is not a listener (use %s)", name, strings.Join(ProxyListeners, ", "))
		}
		if seen[name] {
			return bad("proxy-protocol", "%q is listed twice", name)
		}
		seen[name] = true
		if c.listenerAddr(name) == "" {
			return bad("proxy-protocol", "names %s, but --%s-addr is empty (that listener is disabled)", name, name)
		}
	}
	switch {
	case len(c.ProxyProtocol) > 0 && len(c.ProxyTrusted) == 0:
		return bad("proxy-trusted", "is required with --proxy-protocol: the addresses of the load balancers that may send PROXY headers")
	case len(c.ProxyProtocol) == 0 && len(c.ProxyTrusted) > 0:
		return bad("proxy-trusted", "has no effect without --proxy-protocol")
	case c.ProxyHeaderTimeout <= 0:
		return bad("proxy-header-timeout", "must be positive")
	case c.ProxyHeaderTimeout > 5*time.Minute:
		return bad("proxy-header-timeout", "%s is above 5m", c.ProxyHeaderTimeout)
	}
	return nil
}
