// Package server wires Postoffice together: the store, the users, TLS, the
// SMTP and POP3 engines and their listeners, limits, reloads and graceful
// shutdown.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postoffice/internal/auth"
	"postoffice/internal/backend"
	"postoffice/internal/chaos"
	"postoffice/internal/config"
	"postoffice/internal/imap"
	"postoffice/internal/metrics"
	"postoffice/internal/netpolicy"
	"postoffice/internal/pop3"
	"postoffice/internal/smtp"
	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
	"postoffice/internal/web"
	"postoffice/internal/webhook"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Server is a running Postoffice.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	store  store.Store
	index  browser       // the web inbox's view of the store
	pool   *pgxpool.Pool // the shared store's; nil with the Maildir
	certs  *certSource
	users  *auth.UsersFile // nil without --users-file
	single *auth.Users     // the default user without --users-file
	thr    *auth.Throttle

	smtp *smtp.Server
	pop3 *pop3.Server
	imap *imap.Server

	// delivery is the SMTP backend, whose Submit the web API's send
	// uses too (see send.go).
	delivery *backend.SMTP

	metrics  *metrics.Metrics
	mux      *http.ServeMux // see http.go
	http     *http.Server   // nil when --http-addr is empty
	draining atomic.Bool    // Shutdown has begun: not ready
	pruner   *pruner        // nil when retention is off
	web      *web.Handler   // nil with --web-disable; see http.go

	chaos   *chaos.Engine   // SMTP fault injection; see inject.go
	webhook *webhook.Sender // nil without --webhook-url

	// metricsHTTP serves /metrics on --metrics-addr; nil when it is empty.
	metricsHTTP *http.Server

	mu        sync.Mutex
	listeners map[string]net.Listener // by config name: smtp, smtps, pop3, pop3s, http, metrics
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New prepares a server from cfg; Start opens the listeners. It opens the
// store, the users and the TLS certificate, then builds the protocol
// engines on the backends, the HTTP routes and the retention pruner.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: logger, listeners: map[string]net.Listener{}, metrics: metrics.New()}
	s.metrics.Mailboxes.SetPerMailbox(cfg.MetricsMailboxLabels)
	if err := s.openStore(); err != nil {
		return nil, err
	}
	router, err := s.openUsers()
	if err != nil {
		return nil, err
	}
	s.createDefaultMailbox()
	s.thr = s.newThrottle()
	tlsConfig, err := s.loadTLS()
	if err != nil {
		return nil, err
	}
	inj := metrics.NewInjection(s.metrics)
	if s.chaos, err = s.newChaos(inj); err != nil {
		return nil, err
	}
	s.webhook = s.newWebhook(inj)
	s.smtp = s.newSMTP(router, tlsConfig)
	s.pop3 = s.newPOP3(tlsConfig)
	s.imap = s.newIMAP(tlsConfig)
	s.mux = s.newMux()
	if policy := s.retentionPolicy(); policy.Enabled() {
		s.pruner = newPruner(s.store, policy, cfg.RetentionInterval, logger, s.metrics)
	}
	return s, nil
}

// minFreeSpace is the Maildir's MinFreeSpace for --min-free-space.
func minFreeSpace(v config.Size) int64 {
	if v == config.AutoMinFreeSpace {
		return maildir.AutoMinFreeSpace
	}
	return int64(v)
}

// openStore opens the Maildir under --mailbox-dir, its directory fsyncs
// timed by the metrics, and (unless --web-disable) the index the web inbox
// browses it through.
func (s *Server) openStore() error {
	if s.cfg.Shared() {
		return s.openShared()
	}
	md, err := maildir.New(s.cfg.MailboxDir, maildir.Options{
		Logger:       s.log,
		FsyncDone:    func(_ string, took time.Duration, err error) { s.metrics.Fsync(took, err) },
		MinFreeSpace: minFreeSpace(s.cfg.MinFreeSpace),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.cfg.Setting("mailbox-dir"), err)
	}
	s.store = md
	// The persistent index (one SQLite file per folder) feeds the web
	// inbox, POP3's maildrop listing, IMAP's text searches and IMAP's
	// FETCH of ENVELOPE and BODYSTRUCTURE.
	ix := index.New(md, IndexOptions(s.log, s.cfg.IndexDisable))
	s.index = ix
	if !s.cfg.IndexDisable {
		md.UseIndex(ix)
	}
	return nil
}

// openUsers opens --users-file, or makes the single default user without
// one, and returns the recipient router that goes with them.
func (s *Server) openUsers() (*backend.Router, error) {
	cfg := s.cfg
	router := &backend.Router{CatchAll: auth.CanonicalName(cfg.CatchAll), Domains: cfg.Domains}
	if cfg.UsersFile == "" {
		name := auth.CanonicalName(cfg.DefaultUser)
		if !auth.ValidName(name) {
			return nil, fmt.Errorf("%s: %q is not a valid user name (letters, digits, '.', '_', '-')", cfg.Setting("user"), cfg.DefaultUser)
		}
		s.single = auth.SingleUser(name, cfg.DefaultPassword)
		router.Single = name
		return router, nil
	}
	uf, err := auth.OpenUsersFile(cfg.UsersFile, s.log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Setting("users-file"), err)
	}
	s.users = uf
	if router.CatchAll != "" {
		if _, ok := uf.Current().Lookup(router.CatchAll); !ok {
			return nil, fmt.Errorf("%s: %q is not a user of %s", cfg.Setting("catch-all"), cfg.CatchAll, cfg.UsersFile)
		}
	}
	router.Users = func() backend.Directory { return uf.Current() }
	// RFC 5321 §4.5.1: "postmaster" must be deliverable. Without a user
	// or alias of that name (and no catch-all), it goes to the web
	// admin, else to the first user by name.
	admin := auth.CanonicalName(cfg.WebAdmin)
	router.Postmaster = func() string {
		u := uf.Current()
		if _, ok := u.Lookup(admin); admin != "" && ok {
			return admin
		}
		if names := u.Names(); len(names) > 0 {
			return names[0]
		}
		return ""
	}
	return router, nil
}

// createDefaultMailbox makes the default user's mailbox exist from the
// start without --users-file (README: mail goes to mailbox/user/new/), so
// that a newcomer finds mailbox/user/{tmp,new,cur} before the first
// delivery, as a Maildir reader pointed at it expects. A failure is logged
// and the start goes on: the first delivery tries again, and /readyz
// reports an unwritable directory.
func (s *Server) createDefaultMailbox() {
	if s.single == nil {
		return
	}
	name := auth.CanonicalName(s.cfg.DefaultUser)
	if err := s.store.CreateMailbox(name); err != nil {
		s.log.Error("cannot create the default mailbox", "mailbox", name, "err", err)
	}
}

// newThrottle returns the failed-login throttle shared by SMTP, POP3 and
// the web inbox.
func (s *Server) newThrottle() *auth.Throttle {
	// The throttle reads zero as "default" and a negative value as "off";
	// the flags' zero means off.
	baseDelay := s.cfg.AuthDelay
	if baseDelay == 0 {
		baseDelay = -1
	}
	return auth.NewThrottle(auth.ThrottleConfig{
		BaseDelay:   baseDelay,
		MaxDelay:    s.cfg.AuthMaxDelay,
		MaxFailures: cmp.Or(s.cfg.AuthMaxFailures, -1),
		Window:      s.cfg.AuthWindow,
		Exempt:      s.cfg.TrustedNetworks.IsLocal,
		Logger:      s.log,
	})
}

// loadTLS loads --tls-cert/--tls-key (or makes a self-signed certificate),
// or returns nil when TLS is off.
func (s *Server) loadTLS() (*tls.Config, error) {
	if !s.cfg.TLSEnabled() {
		return nil, nil
	}
	cs, err := newCertSource(s.cfg.TLSCert, s.cfg.TLSKey, s.cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.cfg.Setting("tls-cert"), err)
	}
	s.certs = cs
	return cs.config(), nil
}

// authn returns the authenticator of proto.
func (s *Server) authn(proto string) *backend.Authn {
	return &backend.Authn{Users: s.currentUsers, Throttle: s.thr, Counter: s.metrics, Proto: proto}
}

// limiter returns a connection limiter of the configured caps.
func (s *Server) limiter() *netpolicy.Limiter {
	return &netpolicy.Limiter{Max: s.cfg.MaxConnections, MaxPerIP: s.cfg.MaxConnectionsPerIP, Exempt: s.cfg.TrustedNetworks.IsLocal}
}

// newSMTP returns the SMTP engine on the SMTP backend.
func (s *Server) newSMTP(router *backend.Router, tlsConfig *tls.Config) *smtp.Server {
	cfg := s.cfg
	var delivered func(backend.Delivery)
	if s.webhook != nil {
		delivered = s.delivered
	}
	s.delivery = &backend.SMTP{
		Store:    &meteredStore{Deliverer: s.store, m: s.metrics},
		Router:   router,
		Auth:     s.authn("smtp"),
		Hostname: cfg.Hostname,
		Logger:   s.log,
		// --min-free-space: 452 4.3.1 at MAIL below it.
		FreeSpace: s.store.FreeSpace,
		Delivered: delivered,
	}
	return &smtp.Server{
		Hostname:          cfg.Hostname,
		Backend:           s.delivery,
		Policy:            s.chaos,
		Logger:            s.log.With("proto", "smtp"),
		MaxMessageBytes:   int64(cfg.MaxMessageSize),
		MaxRecipients:     cfg.MaxRecipients,
		MaxLineLength:     cfg.MaxLineLength,
		MaxErrors:         cfg.MaxErrors,
		MaxJunkCommands:   junkLimit(cfg.MaxJunkCommands),
		CommandTimeout:    cfg.SMTPCommandTimeout,
		DataTimeout:       cfg.SMTPDataTimeout,
		MinDataRate:       int64(cfg.SMTPMinDataRate),
		BareNewline:       bareNewline(cfg.SMTPBareNewline),
		WriteTimeout:      cfg.WriteTimeout,
		Limiter:           s.limiter(),
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.AllowInsecureAuth,
		IsLocal:           cfg.TrustedNetworks.IsLocal,
		RequireAuth:       cfg.SMTPRequireAuth,
		RequireHelo:       cfg.SMTPRequireHelo,
		AuthEnabled:       true,
		Observer:          s.metrics.Observer("smtp"),
	}
}

// junkLimit maps --max-junk-commands (0: no limit) to
// smtp.Server.MaxJunkCommands (0: the default, negative: no limit).
func junkLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// bareNewline is the SMTP engine's policy named by --smtp-bare-newline
// (validated by config).
func bareNewline(name string) smtp.BareNewline {
	p, _ := smtp.ParseBareNewline(name)
	return p
}

// newPOP3 returns the POP3 engine on the POP3 backend.
func (s *Server) newPOP3(tlsConfig *tls.Config) *pop3.Server {
	cfg := s.cfg
	return &pop3.Server{
		Logger: s.log.With("proto", "pop3"),
		Backend: &backend.POP3{
			Auth:    s.authn("pop3"),
			Store:   &meteredMaildrops{MaildropOpener: s.store, m: s.metrics},
			Counter: s.metrics,
		},
		Hostname:          cfg.Hostname,
		LoginTimeout:      cfg.POP3LoginTimeout,
		IdleTimeout:       cfg.POP3IdleTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		MaxErrors:         cfg.MaxErrors,
		Limiter:           s.limiter(),
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.AllowInsecureAuth,
		IsLocal:           cfg.TrustedNetworks.IsLocal,
		Observer:          s.metrics.Observer("pop3"),
	}
}

// newIMAP returns the IMAP server on the IMAP backend.
func (s *Server) newIMAP(tlsConfig *tls.Config) *imap.Server {
	cfg := s.cfg
	return &imap.Server{
		Logger: s.log.With("proto", "imap"),
		Backend: &backend.IMAP{
			Auth:        s.authn("imap"),
			Folders:     s.store,
			Counter:     s.metrics,
			AppendLimit: int64(cfg.MaxMessageSize),
			Searcher:    s.index,
			FetchIndex:  s.index,
		},
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.AllowInsecureAuth,
		IsLocal:           cfg.TrustedNetworks.IsLocal,
		Limiter:           s.limiter(),
		LoginTimeout:      cfg.IMAPLoginTimeout,
		IdleTimeout:       cfg.IMAPIdleTimeout,
		Observer:          s.metrics.Observer("imap"),
	}
}

func (s *Server) currentUsers() *auth.Users {
	if s.users != nil {
		return s.users.Current()
	}
	return s.single
}

// Start opens every configured listener and serves them in the background.
// On error, whatever was opened is closed again.
func (s *Server) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	type lc struct {
		name, addr string
		tls        bool
		serve      func(net.Listener) error
	}
	specs := []lc{
		{"smtp", s.cfg.SMTPAddr, false, s.smtp.Serve},
		{"smtps", s.cfg.SMTPSAddr, true, s.smtp.Serve},
		{"pop3", s.cfg.POP3Addr, false, s.pop3.Serve},
		{"pop3s", s.cfg.POP3SAddr, true, s.pop3.Serve},
		{"imap", s.cfg.IMAPAddr, false, s.imap.Serve},
		{"imaps", s.cfg.IMAPSAddr, true, s.imap.Serve},
	}
	var opened []net.Listener
	for _, sp := range specs {
		if sp.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", sp.addr)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			cancel()
			return fmt.Errorf("%s: %w", s.cfg.Setting(sp.name+"-addr"), err)
		}
		opened = append(opened, l)
		l = s.proxyWrap(sp.name, l) // the header comes before everything, TLS included
		reply := ""
		switch {
		case sp.tls:
		case strings.HasPrefix(sp.name, "smtp"):
			reply = "421 4.7.0 " + s.cfg.Hostname + " Too many failed logins from your address, try later"
		case strings.HasPrefix(sp.name, "imap"):
			reply = "* BYE [UNAVAILABLE] Too many failed logins from your address, try later"
		default:
			reply = "-ERR [AUTH] Too many failed logins from your address, try later"
		}
		l = &blockListener{Listener: l, blocked: s.thr.Blocked, reply: reply, log: s.log.With("proto", sp.name),
			proto: sp.name, m: s.metrics, received: s.metrics.BytesReceived(sp.name)}
		if sp.tls {
			l = tls.NewListener(l, s.certs.config())
		}
		s.mu.Lock()
		s.listeners[sp.name] = l
		s.mu.Unlock()
		s.log.Info("listening", "proto", sp.name, "addr", l.Addr().String())
	}
	if err := s.startHTTP(); err != nil {
		for _, sp := range specs {
			if l := s.Listener(sp.name); l != nil {
				l.Close()
			}
		}
		cancel()
		return err
	}
	for _, sp := range specs {
		l := s.Listener(sp.name)
		if l == nil {
			continue
		}
		serve := sp.serve
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, pop3.ErrServerClosed) && !errors.Is(err, imap.ErrServerClosed) {
				s.log.Error("listener failed", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	// Mailbox gauges: filled from disk in the background, then kept by
	// store events.
	go s.trackMailboxes(ctx)
	if s.pruner != nil {
		go s.pruner.run(ctx)
	}

	if s.users != nil {
		go s.users.Watch(ctx)
	} else {
		s.log.Warn("no --users-file: every recipient goes to the default user, whose credentials are the defaults unless --user/--password are set", "user", auth.CanonicalName(s.cfg.DefaultUser))
	}
	// Leftovers of deliveries cut off by a crash: never visible, but they
	// take space. Only tmp/ directories are read.
	go func() {
		if n, err := s.store.Recover(); err != nil {
			s.log.Warn("removing leftovers of cut-off deliveries", "err", err)
		} else if n > 0 {
			s.log.Info("removed leftovers of cut-off deliveries (Maildir: files in tmp/; shared store: orphan objects)", "count", n)
		}
	}()
	return nil
}

// Listener returns the listener of "smtp", "smtps", "pop3", "pop3s",
// "imap", "imaps", "http" or "metrics", or nil when that one is not open.
func (s *Server) Listener(name string) net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listeners[name]
}

// Reload re-reads the users file and the TLS certificate (SIGHUP). Errors
// leave the old ones in use.
func (s *Server) Reload() error {
	var errs []error
	if s.users != nil {
		if err := s.users.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.certs != nil {
		if err := s.certs.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.reloadChaos(); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("reload failed; keeping the previous configuration", "err", err)
	} else {
		s.log.Info("reloaded users and TLS certificate")
	}
	return err
}

// Shutdown stops accepting, lets sessions finish what they are doing until
// ctx ends, then closes the rest. /readyz answers 503 from the start of
// Shutdown; the HTTP listener closes last, once the sessions are gone and
// the retention pruner has stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var wg sync.WaitGroup
	var smtpErr, pop3Err, imapErr error
	wg.Add(3)
	go func() { defer wg.Done(); smtpErr = s.smtp.Shutdown(ctx) }()
	go func() { defer wg.Done(); pop3Err = s.pop3.Shutdown(ctx) }()
	go func() { defer wg.Done(); imapErr = s.imap.Shutdown(ctx) }()
	wg.Wait()
	s.wg.Wait()
	s.stopWebhook(ctx)
	if s.cancel != nil {
		s.cancel()
	}
	if s.pruner != nil {
		s.pruner.wait()
	}
	// After the sessions: remove the tmp files prepared for deliveries. A
	// delivery still running (past ctx) creates its own.
	httpErr := s.stopHTTP(ctx)
	if s.index != nil {
		s.index.Close() // after the last web request, before the store
	}
	storeErr := s.store.Close()
	if s.pool != nil {
		s.pool.Close() // after the store
	}
	return errors.Join(smtpErr, pop3Err, imapErr, httpErr, storeErr)
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Store returns the mailbox store.
func (s *Server) Store() store.Store { return s.store }

// retentionPolicy is the policy of the retention flags.
func (s *Server) retentionPolicy() store.RetentionPolicy {
	return store.RetentionPolicy{MaxAge: s.cfg.RetentionMaxAge, MaxMessages: s.cfg.RetentionMaxMessages}
}

// blockListener refuses connections from clients over the failed-login cap
// before any protocol starts (DESIGN.md: the cap's log line is what an
// operator feeds to fail2ban). Plain listeners get a one-line reply in the
// protocol's words; implicit-TLS listeners are closed silently.
type blockListener struct {
	net.Listener
	blocked func(netip.Addr) bool
	reply   string // "" to close without a word
	log     *slog.Logger

	proto    string             // metrics label
	m        *metrics.Metrics   // connections accepted, refused
	received prometheus.Counter // octets read
}

func (l *blockListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := netpolicy.AddrIP(c.RemoteAddr())
		if !l.blocked(ip) {
			l.m.ConnOpened(l.proto)
			return &countingConn{Conn: c, l: l}, nil
		}
		l.m.ConnRejected(l.proto, "blocked")
		id := netpolicy.NewID()
		l.log.Warn("connection refused: too many failed logins", "conn", id, "ip", ip.String())
		go func() {
			if l.reply != "" {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte(l.reply + " (conn " + id + ")\r\n"))
			}
			c.Close()
		}()
	}
}

// IndexOptions are the options of the store's index, for the server and
// for the reindex command alike: what IMAP keeps precomputed in it is
// the same whoever builds it.
func IndexOptions(log *slog.Logger, noBackground bool) index.Options {
	return index.Options{Logger: log, NoBackground: noBackground, Precompute: backend.PrecomputeFetch}
}
