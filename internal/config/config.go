// Package config builds Postoffice's one Config from command-line flags,
// POSTOFFICE_* environment variables and an optional TOML file, and
// validates it. Precedence: a flag given on the command line, then its
// environment variable, then the file, then the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"postoffice/internal/netpolicy"
)

// Config is every setting of the server.
type Config struct {
	SMTPAddr   string
	SMTPSAddr  string
	POP3Addr   string
	POP3SAddr  string
	IMAPAddr   string
	IMAPSAddr  string
	MailboxDir string
	Hostname   string

	DefaultUser     string
	DefaultPassword string
	UsersFile       string
	CatchAll        string
	Domains         []string

	TLSCert       string
	TLSKey        string
	TLSSelfSigned bool

	AllowInsecureAuth bool
	Insecure          bool
	SMTPRequireAuth   bool
	SMTPRequireHelo   bool
	TrustedNetworks   netpolicy.Networks

	// PROXY protocol (proxy.go): the listeners that expect a header, the
	// load balancers allowed to send one, and how long it may take.
	ProxyProtocol      []string
	ProxyTrusted       netpolicy.Networks
	ProxyHeaderTimeout time.Duration

	MaxMessageSize      Size
	MaxRecipients       int
	MaxLineLength       int
	MaxErrors           int
	MaxJunkCommands     int
	MaxConnections      int
	MaxConnectionsPerIP int

	SMTPCommandTimeout time.Duration
	SMTPDataTimeout    time.Duration
	SMTPMinDataRate    int    // octets per second over a DATA/BDAT request; 0: none
	SMTPBareNewline    string // bare CR/LF and NUL in message data: normalize, reject or accept
	WriteTimeout       time.Duration
	POP3LoginTimeout   time.Duration
	POP3IdleTimeout    time.Duration
	IMAPLoginTimeout   time.Duration
	IMAPIdleTimeout    time.Duration
	ShutdownTimeout    time.Duration

	AuthDelay       time.Duration
	AuthMaxDelay    time.Duration
	AuthMaxFailures int
	AuthWindow      time.Duration

	LogFormat string
	LogLevel  string

	// HTTPAddr is the HTTP listener of /metrics, /healthz and /readyz;
	// empty disables it.
	HTTPAddr string

	// MetricsAddr is a listener of its own for /metrics; empty serves
	// /metrics on HTTPAddr. MetricsToken, when set, is the bearer token
	// /metrics requires. MetricsMailboxLabels adds the per-mailbox series
	// (their label is the user name).
	MetricsAddr          string
	MetricsToken         string
	MetricsMailboxLabels bool

	// WebAdmin is a user who sees every mailbox in the web inbox (served
	// on HTTPAddr); WebDisable turns the web inbox off (the operations
	// endpoints stay).
	WebAdmin   string
	WebDisable bool

	// IndexDisable turns off indexing after delivery and POP3's use of
	// the index (the web inbox then indexes a folder when it first lists
	// it).
	IndexDisable bool

	// WaitMax caps the timeout of the web API's messages/wait.
	WaitMax time.Duration
	// LinkCheckAllow are the host globs the web API's links?check=1 may
	// fetch (empty: none).
	LinkCheckAllow []string

	// Retention (off when both are zero): see store.RetentionPolicy.
	RetentionMaxAge      time.Duration
	RetentionMaxMessages int
	RetentionInterval    time.Duration

	// MinFreeSpace is the free space on the mailbox directory's
	// filesystem below which SMTP MAIL gets 452 4.3.1; AutoMinFreeSpace
	// (the default) means 100 MiB or 1 % of the filesystem, whichever is
	// smaller; 0 turns the check off.
	MinFreeSpace Size

	// The store (sharedstore.go): the Maildir, or the shared store on
	// PostgreSQL and S3.
	Store         string
	PGURL         string
	S3Endpoint    string
	S3Bucket      string
	S3AccessKey   string
	S3SecretKey   string
	S3Region      string
	StoreTimeout  time.Duration
	BlobCacheSize Size
	NodeName      string
	SweepGrace    time.Duration
	SweepInterval time.Duration

	// Chaos and the webhook: see inject.go.
	Chaos          string
	WebhookURL     string
	WebhookSecret  string
	WebhookRetries int
	WebhookTimeout time.Duration
	WebhookQueue   int
	// Release of stored messages to another SMTP server (POST
	// .../messages/{id}/release, docs/api.md "Release"). RelayAllow lists
	// the recipients allowed (globs; empty disables release), RelayAddr
	// is the default target and RelayAllowAddr the other targets a request
	// may name (host:port each); RelayInsecureTLS skips the verification
	// of the target's certificate in STARTTLS; RelayTimeout bounds every
	// step of the SMTP exchange.
	RelayAddr        string
	RelayAllow       []string
	RelayAllowAddr   []string
	RelayInsecureTLS bool
	RelayTimeout     time.Duration

	// ConfigFile is the TOML file the settings were read from ("" for
	// none). See file.go.
	ConfigFile string

	// fromFile are the settings that took their value from ConfigFile
	// (see Setting).
	fromFile fileSettings
}

// Setting names setting flagName as an error about its value should: as
// "file:line: name" when the value came from the --config file, as for
// the file's unknown keys and invalid values, else as "--name".
func (c Config) Setting(flagName string) string {
	if v, ok := c.fromFile[flagName]; ok {
		return fmt.Sprintf("%s:%d: %s", c.ConfigFile, v.line, flagName)
	}
	return "--" + flagName
}

// AutoMinFreeSpace is the default --min-free-space, "auto": 100 MiB or 1 %
// of the filesystem, whichever is smaller.
const AutoMinFreeSpace Size = -1

// DefaultHTTPAddr is the default --http-addr.
const DefaultHTTPAddr = "127.0.0.1:8025"

// Size is a byte count that parses "25MiB", "512KB", "1048576".
type Size int64

// String formats s in the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		n    int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// ParseSize parses a byte count with an optional unit (B, K/KB/KiB, M/MB/MiB,
// G/GB/GiB; all binary).
func ParseSize(v string) (Size, error) {
	t := strings.TrimSpace(v)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 25MiB)", v)
	}
	mult := int64(1)
	switch unit {
	case "", "b":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("%q has an unknown unit %q", v, unit)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return Size(n * mult), nil
}

type sizeValue struct{ p *Size }

// minFreeValue is --min-free-space: a size, or "auto" (AutoMinFreeSpace).
type minFreeValue struct{ p *Size }

func (v minFreeValue) String() string {
	if v.p == nil {
		return ""
	}
	if *v.p == AutoMinFreeSpace {
		return "auto"
	}
	return v.p.String()
}
func (v minFreeValue) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "auto") {
		*v.p = AutoMinFreeSpace
		return nil
	}
	return sizeValue(v).Set(s)
}

func (v sizeValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}
func (v sizeValue) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

type listValue struct{ p *[]string }

func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}
func (v listValue) Set(s string) error {
	*v.p = nil
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		*v.p = append(*v.p, strings.ToLower(f))
	}
	return nil
}

type netsValue struct{ p *netpolicy.Networks }

func (v netsValue) String() string {
	if v.p == nil {
		return ""
	}
	var s []string
	for _, p := range *v.p {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}
func (v netsValue) Set(s string) error {
	n, err := netpolicy.ParseNetworks(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// Default returns the zero-configuration settings (DESIGN.md, "Defaults a
// newcomer gets").
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return Config{
		SMTPAddr:            "127.0.0.1:2525",
		POP3Addr:            "127.0.0.1:1100",
		IMAPAddr:            "127.0.0.1:1430",
		MailboxDir:          "./mailbox",
		Hostname:            host,
		DefaultUser:         "user",
		DefaultPassword:     "pass",
		MaxMessageSize:      25 << 20,
		MaxRecipients:       100,
		MaxLineLength:       2048,
		MaxErrors:           10,
		MaxJunkCommands:     100,
		MaxConnections:      4096,
		MaxConnectionsPerIP: 20,
		SMTPCommandTimeout:  5 * time.Minute,
		SMTPDataTimeout:     3 * time.Minute,
		SMTPMinDataRate:     500,
		SMTPBareNewline:     "normalize",
		WriteTimeout:        time.Minute,
		POP3LoginTimeout:    time.Minute,
		POP3IdleTimeout:     10 * time.Minute,
		IMAPLoginTimeout:    time.Minute,
		IMAPIdleTimeout:     30 * time.Minute,
		ShutdownTimeout:     30 * time.Second,
		AuthDelay:           2 * time.Second,
		AuthMaxDelay:        15 * time.Second,
		AuthMaxFailures:     10,
		AuthWindow:          15 * time.Minute,
		LogFormat:           "text",
		LogLevel:            "info",
		HTTPAddr:            DefaultHTTPAddr,
		RetentionInterval:   time.Minute,
		MinFreeSpace:        AutoMinFreeSpace,
		WebhookRetries:      4,
		WebhookTimeout:      10 * time.Second,
		WebhookQueue:        1000,
		Store:               "maildir",
		S3Region:            "us-east-1",
		StoreTimeout:        10 * time.Second,
		BlobCacheSize:       64 << 20,
		SweepGrace:          time.Hour,
		SweepInterval:       10 * time.Minute,
		WaitMax:             5 * time.Minute,
		LinkCheckAllow:      []string{"localhost", "127.0.0.1", "::1"},
		ProxyHeaderTimeout:  DefaultProxyHeaderTimeout,
		RelayTimeout:        30 * time.Second,
	}
}

// FlagSet returns a flag set bound to c. Each flag's environment variable
// is EnvName(flag name).
func (c *Config) FlagSet(name string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.SMTPAddr, "smtp-addr", c.SMTPAddr, "SMTP listen address (host:port); empty disables")
	fs.StringVar(&c.SMTPSAddr, "smtps-addr", c.SMTPSAddr, "SMTP implicit-TLS listen address, e.g. :465 (needs TLS); empty disables")
	fs.StringVar(&c.POP3Addr, "pop3-addr", c.POP3Addr, "POP3 listen address (host:port); empty disables")
	fs.StringVar(&c.POP3SAddr, "pop3s-addr", c.POP3SAddr, "POP3 implicit-TLS listen address, e.g. :995 (needs TLS); empty disables")
	fs.StringVar(&c.IMAPAddr, "imap-addr", c.IMAPAddr, "IMAP listen address (host:port); empty disables")
	fs.StringVar(&c.IMAPSAddr, "imaps-addr", c.IMAPSAddr, "IMAP implicit-TLS listen address, e.g. :993 (needs TLS); empty disables")
	fs.StringVar(&c.MailboxDir, "mailbox-dir", c.MailboxDir, "directory holding one Maildir per user (created if missing)")
	fs.StringVar(&c.Hostname, "hostname", c.Hostname, "host name in greetings and Received headers")
	fs.StringVar(&c.DefaultUser, "user", c.DefaultUser, "the single user when no users file is given")
	fs.StringVar(&c.DefaultPassword, "password", c.DefaultPassword, "password of the single user when no users file is given")
	fs.StringVar(&c.UsersFile, "users-file", c.UsersFile, "users file (name:bcrypt-hash lines); enables per-user mailboxes")
	fs.StringVar(&c.CatchAll, "catch-all", c.CatchAll, "with a users file: user that receives mail for unknown recipients")
	fs.Var(listValue{&c.Domains}, "domain", "with a users file: comma-separated domains accepted (empty: any domain)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate chain (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key (PEM)")
	fs.BoolVar(&c.TLSSelfSigned, "tls-self-signed", c.TLSSelfSigned, "generate an in-memory self-signed certificate for --hostname (development)")
	fs.BoolVar(&c.AllowInsecureAuth, "allow-insecure-auth", c.AllowInsecureAuth, "allow plaintext passwords without TLS from non-local clients")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "allow listening on non-loopback addresses with the default credentials")
	fs.BoolVar(&c.SMTPRequireAuth, "smtp-require-auth", c.SMTPRequireAuth, "every SMTP MAIL needs an authenticated session")
	fs.BoolVar(&c.SMTPRequireHelo, "smtp-require-helo", c.SMTPRequireHelo, "SMTP MAIL needs HELO/EHLO first (503 5.5.1 otherwise)")
	fs.Var(netsValue{&c.TrustedNetworks}, "trusted-networks", "comma-separated CIDRs treated like loopback (exempt from per-IP caps)")
	fs.Var(sizeValue{&c.MaxMessageSize}, "max-message-size", "largest message accepted (SIZE), e.g. 25MiB")
	fs.IntVar(&c.MaxRecipients, "max-recipients", c.MaxRecipients, "recipients per SMTP transaction")
	fs.IntVar(&c.MaxLineLength, "max-line-length", c.MaxLineLength, "longest SMTP command line in octets (at least 512)")
	fs.IntVar(&c.MaxErrors, "max-errors", c.MaxErrors, "protocol errors before a session is closed")
	fs.IntVar(&c.MaxJunkCommands, "max-junk-commands", c.MaxJunkCommands, "SMTP NOOP/RSET/VRFY/HELP per session between delivered messages before 421 (0: no limit)")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "concurrent connections per protocol, for all clients")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", c.MaxConnectionsPerIP, "concurrent connections per client IP per protocol (loopback and trusted networks exempt)")
	fs.DurationVar(&c.SMTPCommandTimeout, "smtp-command-timeout", c.SMTPCommandTimeout, "SMTP wait for the next command")
	fs.DurationVar(&c.SMTPDataTimeout, "smtp-data-timeout", c.SMTPDataTimeout, "SMTP wait for each block of message data")
	fs.IntVar(&c.SMTPMinDataRate, "smtp-min-data-rate", c.SMTPMinDataRate, "SMTP minimum average data rate of DATA and BDAT in bytes per second (0: none)")
	fs.StringVar(&c.SMTPBareNewline, "smtp-bare-newline", c.SMTPBareNewline, "SMTP bare CR/LF (and NUL) in message data: normalize, reject or accept")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "wait for the client to accept a reply")
	fs.DurationVar(&c.POP3LoginTimeout, "pop3-login-timeout", c.POP3LoginTimeout, "POP3 time allowed to log in")
	fs.DurationVar(&c.POP3IdleTimeout, "pop3-idle-timeout", c.POP3IdleTimeout, "POP3 autologout after this idle time (RFC 1939: at least 10m)")
	fs.DurationVar(&c.IMAPLoginTimeout, "imap-login-timeout", c.IMAPLoginTimeout, "IMAP time allowed to log in")
	fs.DurationVar(&c.IMAPIdleTimeout, "imap-idle-timeout", c.IMAPIdleTimeout, "IMAP autologout after this idle time, IDLE included (RFC 9051 §5.4: at least 30m)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "on SIGINT/SIGTERM, time allowed for sessions to finish")
	fs.DurationVar(&c.AuthDelay, "auth-delay", c.AuthDelay, "delay after a failed login; doubles per consecutive failure")
	fs.DurationVar(&c.AuthMaxDelay, "auth-max-delay", c.AuthMaxDelay, "cap of the failed-login delay")
	fs.IntVar(&c.AuthMaxFailures, "auth-max-failures", c.AuthMaxFailures, "failed logins per IP per window before the IP is refused (loopback and trusted networks exempt)")
	fs.DurationVar(&c.AuthWindow, "auth-window", c.AuthWindow, "window of --auth-max-failures")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP listen address of /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "listen address of its own for /metrics (host:port); empty serves /metrics on --http-addr")
	fs.StringVar(&c.MetricsToken, "metrics-token", c.MetricsToken, "bearer token /metrics requires (Authorization: Bearer TOKEN); empty: none")
	fs.BoolVar(&c.MetricsMailboxLabels, "metrics-mailbox-labels", c.MetricsMailboxLabels, "export the per-mailbox gauges, labelled with the user names")
	fs.StringVar(&c.WebAdmin, "web-admin", c.WebAdmin, "user who sees every mailbox in the web inbox (others see their own)")
	fs.BoolVar(&c.WebDisable, "web-disable", c.WebDisable, "do not serve the web inbox and its JSON API on --http-addr")
	fs.BoolVar(&c.IndexDisable, "index-disable", c.IndexDisable, "do not index messages after delivery, and open POP3 maildrops by listing the Maildir instead of from the index")
	fs.DurationVar(&c.WaitMax, "wait-max", c.WaitMax, "longest timeout a web API wait (GET .../messages/wait) may ask for")
	fs.Var(listValue{&c.LinkCheckAllow}, "link-check-allow", "comma-separated host globs the web API's link check (GET .../links?check=1) may fetch; empty: none")
	fs.DurationVar(&c.RetentionMaxAge, "retention-max-age", c.RetentionMaxAge, "remove messages older than this from every mailbox (0: keep forever)")
	fs.IntVar(&c.RetentionMaxMessages, "retention-max-messages", c.RetentionMaxMessages, "keep at most this many messages per mailbox, removing the oldest (0: no limit)")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", c.RetentionInterval, "time between retention passes (also run after deliveries)")
	fs.Var(minFreeValue{&c.MinFreeSpace}, "min-free-space", "free space on the mailbox filesystem below which SMTP MAIL gets 452 4.3.1: a size, auto (100MiB or 1% of the filesystem, whichever is smaller) or 0 (off)")
	c.injectFlags(fs)
	c.storeFlags(fs)
	c.proxyFlags(fs)
	fs.StringVar(&c.RelayAddr, "relay-addr", c.RelayAddr, "default SMTP server (host:port) that the API's release hands stored messages to")
	fs.Var(listValue{&c.RelayAllow}, "relay-allow", "comma-separated recipients a stored message may be released to, globs such as *@example.test (empty: release disabled)")
	fs.Var(listValue{&c.RelayAllowAddr}, "relay-allow-addr", "comma-separated host:port targets a release request may name besides --relay-addr")
	fs.BoolVar(&c.RelayInsecureTLS, "relay-insecure-tls", c.RelayInsecureTLS, "release: do not verify the relay target's certificate in STARTTLS")
	fs.DurationVar(&c.RelayTimeout, "relay-timeout", c.RelayTimeout, "release: deadline of each step of the SMTP exchange with the relay target")
	fs.StringVar(&c.ConfigFile, configFlag, c.ConfigFile, "TOML configuration file; its keys are the flag names (flags and environment win over it)")
	return fs
}

// EnvName is the environment variable of a flag: POSTOFFICE_ and the flag
// name in upper case with '-' as '_'.
func EnvName(flagName string) string {
	return "POSTOFFICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse builds a Config from the defaults, the environment (looked up with
// getenv) and args. It returns flag.ErrHelp for -h/--help.
func Parse(name string, args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c, rest, err := ParseArgs(name, args, getenv, output, nil)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	return c, err
}

// ParseArgs is Parse for commands that take arguments after the flags and
// flags of their own: extra, if not nil, adds those to the flag set. It
// returns the arguments after the flags. A validation error is returned
// with the Config as parsed, so that a caller reporting every problem
// (postoffice check) can go on.
func ParseArgs(name string, args []string, getenv func(string) string, output io.Writer, extra func(*flag.FlagSet)) (Config, []string, error) {
	c, rest, fromFile, err := parseArgs(name, args, getenv, output, extra)
	c.fromFile = fromFile
	if err != nil {
		return c, rest, err
	}
	return c, rest, fromFile.locate(c.ConfigFile, c.Validate())
}

// parseArgs also returns the settings that took their value from the
// --config file.
func parseArgs(name string, args []string, getenv func(string) string, output io.Writer, extra func(*flag.FlagSet)) (Config, []string, fileSettings, error) {
	c := Default()
	fs := c.FlagSet(name, output)
	// Only the server's settings come from the environment and the file;
	// a command's own flags (extra) only from its command line.
	own := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { own[f.Name] = true })
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() { Usage(fs, name) }
	if err := fs.Parse(args); err != nil {
		return c, nil, nil, err
	}
	rest := fs.Args()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set[configFlag] {
		if v, ok := lookup(getenv, EnvName(configFlag)); ok {
			c.ConfigFile = v
		}
	}
	var file map[string]fileValue
	if c.ConfigFile != "" {
		var err error
		if file, err = readFile(c.ConfigFile, func(name string) bool { return own[name] }); err != nil {
			return c, rest, nil, err
		}
	}
	fromFile := fileSettings{}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == configFlag || !own[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v, ok := lookup(getenv, env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: invalid value %q: %v", env, v, err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, v.value); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %s: invalid value %q: %v", c.ConfigFile, v.line, f.Name, v.value, err))
			}
			fromFile[f.Name] = v
		}
	})
	if len(errs) > 0 {
		return c, rest, fromFile, errs[0]
	}
	return c, rest, fromFile, nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	if getenv == nil {
		v, ok := os.LookupEnv(name)
		return v, ok
	}
	v := getenv(name)
	return v, v != ""
}

// Usage prints the flags with their environment variables and defaults.
func Usage(fs *flag.FlagSet, name string) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: %s [serve] [flags]\n\nFlags (each also read from its environment variable):\n", name)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s\n        %s\n        env %s, default %s\n", f.Name, f.Usage, EnvName(f.Name), def)
	}
}

// Validate checks every setting and returns one error naming the first bad
// one.
func (c *Config) Validate() error {
	bad := func(flagName, format string, a ...any) error {
		return &settingError{flag: flagName, msg: fmt.Sprintf(format, a...)}
	}
	for _, a := range []struct{ name, v string }{
		{"smtp-addr", c.SMTPAddr}, {"smtps-addr", c.SMTPSAddr},
		{"pop3-addr", c.POP3Addr}, {"pop3s-addr", c.POP3SAddr},
		{"imap-addr", c.IMAPAddr}, {"imaps-addr", c.IMAPSAddr},
		{"http-addr", c.HTTPAddr}, {"metrics-addr", c.MetricsAddr},
		{"relay-addr", c.RelayAddr},
	} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			return bad(a.name, "%q is not host:port", a.v)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return bad(a.name, "%q has an invalid port", a.v)
		}
	}
	if c.MetricsToken != "" && !validBearerToken(c.MetricsToken) {
		return bad("metrics-token", "must be letters, digits and -._~+/ (then = padding only): the b64token of RFC 6750 §2.1")
	}
	if c.SMTPAddr == "" && c.SMTPSAddr == "" && c.POP3Addr == "" && c.POP3SAddr == "" && c.IMAPAddr == "" && c.IMAPSAddr == "" {
		return errors.New("--smtp-addr, --pop3-addr, --imap-addr: every listener is disabled")
	}
	if c.MailboxDir == "" {
		return bad("mailbox-dir", "must not be empty")
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		return bad("hostname", "%q is not a host name", c.Hostname)
	}
	if c.UsersFile == "" && (c.DefaultUser == "" || c.DefaultPassword == "") {
		return bad("user", "the default user and password must not be empty without --users-file")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("tls-cert", "--tls-cert and --tls-key go together")
	}
	if c.TLSCert != "" && c.TLSSelfSigned {
		return bad("tls-self-signed", "conflicts with --tls-cert")
	}
	hasTLS := c.TLSCert != "" || c.TLSSelfSigned
	if c.SMTPSAddr != "" && !hasTLS {
		return bad("smtps-addr", "needs --tls-cert/--tls-key or --tls-self-signed")
	}
	if c.POP3SAddr != "" && !hasTLS {
		return bad("pop3s-addr", "needs --tls-cert/--tls-key or --tls-self-signed")
	}
	if c.IMAPSAddr != "" && !hasTLS {
		return bad("imaps-addr", "needs --tls-cert/--tls-key or --tls-self-signed")
	}
	if c.UsersFile == "" && !c.Insecure {
		for _, a := range []struct{ name, v string }{
			{"smtp-addr", c.SMTPAddr}, {"smtps-addr", c.SMTPSAddr},
			{"pop3-addr", c.POP3Addr}, {"pop3s-addr", c.POP3SAddr},
			{"imap-addr", c.IMAPAddr}, {"imaps-addr", c.IMAPSAddr},
			{"http-addr", webAddr(c)},
		} {
			if a.v != "" && !IsLoopbackAddr(a.v) {
				return bad(a.name, "%q is reachable from other hosts while the default credentials are in use: give --users-file, or --insecure to accept the risk", a.v)
			}
		}
	}
	if c.CatchAll != "" && c.UsersFile == "" {
		return bad("catch-all", "needs --users-file (without one every recipient goes to the default user)")
	}
	switch {
	case c.MaxMessageSize < 1024:
		return bad("max-message-size", "%d is below 1KiB", c.MaxMessageSize)
	case c.MaxRecipients < 1:
		// RFC 5321 §4.5.3.1.8: at least 100 recipients MUST be buffered;
		// fewer is allowed as an operator's choice but never zero.
		return bad("max-recipients", "must be at least 1")
	case c.MaxLineLength < 512:
		// RFC 5321 §4.5.3.1.4: a command line of 512 octets must be accepted.
		return bad("max-line-length", "%d is below 512 (RFC 5321 §4.5.3.1.4)", c.MaxLineLength)
	case c.MaxLineLength > 1<<20:
		return bad("max-line-length", "%d is above 1MiB", c.MaxLineLength)
	case c.MaxErrors < 1:
		return bad("max-errors", "must be at least 1")
	case c.MaxJunkCommands < 0:
		return bad("max-junk-commands", "must not be negative (0 means unlimited)")
	case c.MaxConnections < 1:
		return bad("max-connections", "must be at least 1")
	case c.MaxConnectionsPerIP < 0:
		return bad("max-connections-per-ip", "must not be negative (0 means unlimited)")
	case c.AuthMaxFailures < 0:
		return bad("auth-max-failures", "must not be negative (0 means unlimited)")
	case c.SMTPMinDataRate < 0:
		return bad("smtp-min-data-rate", "must not be negative (0 means no minimum)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"smtp-command-timeout", c.SMTPCommandTimeout}, {"smtp-data-timeout", c.SMTPDataTimeout},
		{"write-timeout", c.WriteTimeout}, {"pop3-login-timeout", c.POP3LoginTimeout},
		{"pop3-idle-timeout", c.POP3IdleTimeout}, {"shutdown-timeout", c.ShutdownTimeout},
		{"imap-login-timeout", c.IMAPLoginTimeout}, {"imap-idle-timeout", c.IMAPIdleTimeout},
		{"auth-window", c.AuthWindow},
	} {
		if d.v <= 0 {
			return bad(d.name, "must be positive")
		}
	}
	if c.AuthDelay < 0 || c.AuthMaxDelay < c.AuthDelay {
		return bad("auth-max-delay", "must be at least --auth-delay (%s)", c.AuthDelay)
	}
	if c.WebAdmin != "" && !validWebUser(c.WebAdmin) {
		return bad("web-admin", "%q is not a valid user name", c.WebAdmin)
	}
	if c.WaitMax <= 0 {
		return bad("wait-max", "must be positive")
	}
	for _, g := range c.LinkCheckAllow {
		if g == "" || strings.ContainsAny(g, "/\\") {
			return bad("link-check-allow", "%q is not a host pattern", g)
		}
		if _, err := path.Match(g, ""); err != nil {
			return bad("link-check-allow", "%q is not a valid glob: %v", g, err)
		}
	}
	switch {
	case c.RetentionMaxAge < 0:
		return bad("retention-max-age", "must not be negative (0 means keep forever)")
	case c.RetentionMaxMessages < 0:
		return bad("retention-max-messages", "must not be negative (0 means no limit)")
	case c.RetentionInterval <= 0:
		return bad("retention-interval", "must be positive")
	}
	if err := c.validateInject(bad); err != nil {
		return err
	}
	if err := c.validateStore(bad); err != nil {
		return err
	}
	if err := c.validateProxy(bad); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	switch c.SMTPBareNewline {
	case "normalize", "reject", "accept":
	default:
		return bad("smtp-bare-newline", "%q is not normalize, reject or accept", c.SMTPBareNewline)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return bad("log-format", "%q is not text or json", c.LogFormat)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		return bad("log-level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// validateRelay checks the release settings other than --relay-addr
// (checked with the listen addresses).
func (c *Config) validateRelay() error {
	for _, a := range c.RelayAllowAddr {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return &settingError{flag: "relay-allow-addr", msg: fmt.Sprintf("%q is not host:port", a)}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &settingError{flag: "relay-allow-addr", msg: fmt.Sprintf("%q has an invalid port", a)}
		}
	}
	if c.RelayAddr != "" {
		if host, _, _ := net.SplitHostPort(c.RelayAddr); host == "" {
			return &settingError{flag: "relay-addr", msg: fmt.Sprintf("%q names no host", c.RelayAddr)}
		}
	}
	for _, p := range c.RelayAllow {
		for _, r := range p {
			if r <= ' ' || r == 0x7f {
				return &settingError{flag: "relay-allow", msg: fmt.Sprintf("%q holds a control character or space", p)}
			}
		}
	}
	if c.RelayTimeout <= 0 {
		return &settingError{flag: "relay-timeout", msg: "must be positive"}
	}
	return nil
}

// webAddr is the address of the web inbox, "" when it is off: the web
// inbox logs in with the same credentials as POP3.
func webAddr(c *Config) string {
	if c.WebDisable {
		return ""
	}
	return c.HTTPAddr
}

// IsLoopbackAddr reports whether a listen address binds loopback only.
func IsLoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// TLSEnabled reports whether a certificate is configured.
func (c *Config) TLSEnabled() bool { return c.TLSCert != "" || c.TLSSelfSigned }

// validWebUser reports whether name can be a user name (letters, digits,
// '.', '_', '-'; see auth.ValidName, which config may not import).
func validWebUser(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' || strings.Contains(name, "..") {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validBearerToken reports whether t can be sent as a bearer token: RFC
// 6750 §2.1 b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
// "/" ) *"=".
func validBearerToken(t string) bool {
	body := strings.TrimRight(t, "=")
	if body == "" {
		return false
	}
	for _, r := range body {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~+/", r)) {
			return false
		}
	}
	return true
}
