package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/web"
)

// The HTTP listener (--http-addr): operations endpoints, and the root for
// the web inbox.
//
//	/metrics   Prometheus exposition of the server's registry
//	/healthz   200 {"status":"ok"} while the process serves HTTP at all
//	/readyz    200 when every configured listener is open, the server is
//	           not shutting down, a file can be created in the mailbox
//	           directory and the last reload of the users file and of the
//	           TLS pair succeeded; 503 with the failed checks otherwise
//	/          the web inbox and its JSON API (internal/web, docs/api.md),
//	           or 404 JSON with --web-disable
//
// With --metrics-addr, /metrics is served there only (its own listener,
// "metrics") and the HTTP listener answers it 404. With --metrics-token,
// /metrics wants "Authorization: Bearer TOKEN" and answers 401 otherwise.

// newMux returns the HTTP routes.
func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	if s.cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", s.metricsHandler())
	} else {
		mux.HandleFunc("GET /metrics", notFound) // not the web inbox's either
	}
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	// The web inbox (internal/web) serves everything else.
	if !s.cfg.WebDisable {
		h, err := web.New(web.Options{
			Store:     s.index,
			Users:     s.currentUsers,
			UsersFile: s.users != nil,
			Admin:     s.cfg.WebAdmin,
			Throttle:  s.thr,
			IsLocal:   s.cfg.TrustedNetworks.IsLocal,
			Logger:    s.log.With("proto", "http"),
			// Chaos: /api/v1/chaos (see inject.go).
			Chaos:            s.chaos,
			ListenerLoopback: config.IsLoopbackAddr(s.cfg.HTTPAddr),

			WaitMax:        s.cfg.WaitMax,
			LinkCheckAllow: s.cfg.LinkCheckAllow,

			Submit:         &apiSubmitter{b: s.delivery},
			MaxMessageSize: int64(s.cfg.MaxMessageSize),
			MaxRecipients:  s.cfg.MaxRecipients,
			Hostname:       s.cfg.Hostname,
			Relay:          s.relayClient(),
			RelayPolicy:    s.relayPolicy(),
		})
		if err == nil {
			s.web = h
			mux.Handle("/", h)
			return mux
		}
		s.log.Error("web inbox disabled", "err", err)
	}
	mux.HandleFunc("/", notFound)
	return mux
}

// Handler returns the HTTP handler of --http-addr (tests serve it on their
// own listener).
func (s *Server) Handler() http.Handler { return s.mux }

// metricsHandler is /metrics: the registry's exposition, behind the
// bearer token of --metrics-token when one is set.
func (s *Server) metricsHandler() http.Handler {
	h := s.metrics.Handler()
	token := s.cfg.MetricsToken
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// RFC 6750 §2.1: "Authorization: Bearer b64token"; the scheme
		// name is case-insensitive (RFC 9110 §11.1).
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			// RFC 6750 §3: a 401 carries WWW-Authenticate; a token that
			// was sent but is wrong is "invalid_token".
			challenge := `Bearer realm="postoffice metrics"`
			if r.Header.Get("Authorization") != "" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "bearer token required (--metrics-token)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// startMetrics opens --metrics-addr, if set, and serves /metrics alone on
// it.
func (s *Server) startMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("%s: %w", s.cfg.Setting("metrics-addr"), err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("/", notFound)
	s.metricsHTTP = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	s.mu.Lock()
	s.listeners["metrics"] = l
	s.mu.Unlock()
	s.log.Info("listening", "proto", "metrics", "addr", l.Addr().String())
	go func() {
		if err := s.metricsHTTP.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener failed", "addr", l.Addr().String(), "err", err)
		}
	}()
	return nil
}

// startHTTP opens --http-addr, if set, and serves the mux on it, and the
// metrics listener of --metrics-addr.
func (s *Server) startHTTP() error {
	if err := s.startMetrics(); err != nil {
		return err
	}
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		if s.metricsHTTP != nil {
			s.metricsHTTP.Close()
		}
		return fmt.Errorf("%s: %w", s.cfg.Setting("http-addr"), err)
	}
	l = s.proxyWrap("http", l)
	s.http = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if s.web != nil {
		// End the web inbox's event streams, or Shutdown waits for them.
		s.http.RegisterOnShutdown(s.web.Close)
	}
	s.mu.Lock()
	s.listeners["http"] = l
	s.mu.Unlock()
	s.log.Info("listening", "proto", "http", "addr", l.Addr().String())
	go func() {
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener failed", "addr", l.Addr().String(), "err", err)
		}
	}()
	return nil
}

// stopHTTP closes the HTTP listener and the metrics listener and waits for
// requests in progress until ctx ends.
func (s *Server) stopHTTP(ctx context.Context) error {
	var errs []error
	for _, hs := range []*http.Server{s.http, s.metricsHTTP} {
		if hs == nil {
			continue
		}
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readiness is the body of /readyz.
type readiness struct {
	Status string            `json:"status"` // "ok" or "unavailable"
	Checks map[string]string `json:"checks"` // check name -> "ok" or the problem
}

// Ready runs the readiness checks: "listeners" (every configured listener
// is open and the server is not shutting down) and "mailbox_dir" (the
// store's Probe: for the Maildir, a file can be created and removed in it,
// so a read-only or immutable root fails it); with --users-file,
// "users_file" (its last reload, by SIGHUP or the watcher, succeeded), and
// with --tls-cert, "tls" (its last reload succeeded). A failed reload
// keeps the previous users or certificate in service, but the server no
// longer runs what its files say until they are fixed and reloaded.
func (s *Server) Ready() (ok bool, checks map[string]string) {
	checks = map[string]string{"listeners": "ok", "mailbox_dir": "ok"}
	ok = true
	if s.draining.Load() {
		checks["listeners"] = "shutting down"
		ok = false
	} else {
		for _, l := range []struct{ name, addr string }{
			{"smtp", s.cfg.SMTPAddr}, {"smtps", s.cfg.SMTPSAddr},
			{"pop3", s.cfg.POP3Addr}, {"pop3s", s.cfg.POP3SAddr},
		} {
			if l.addr != "" && s.Listener(l.name) == nil {
				checks["listeners"] = l.name + " is not listening"
				ok = false
				break
			}
		}
	}
	if err := s.store.Probe(); err != nil {
		checks["mailbox_dir"] = err.Error()
		ok = false
	}
	if !s.freeSpaceReady(checks) {
		ok = false
	}
	if !s.reloadsReady(checks) {
		ok = false
	}
	return ok, checks
}

// freeSpaceReady is the "free_space" check of /readyz: the mailbox
// directory's filesystem is not below --min-free-space (below it SMTP
// MAIL gets 452 4.3.1).
func (s *Server) freeSpaceReady(checks map[string]string) bool {
	checks["free_space"] = "ok"
	if err := s.store.FreeSpace(); err != nil {
		checks["free_space"] = err.Error()
		return false
	}
	return true
}

// reloadsReady adds the checks "users_file" and "tls" (when configured) to
// checks and reports whether both passed: the last reload of each file
// succeeded.
func (s *Server) reloadsReady(checks map[string]string) bool {
	ok := true
	if s.users != nil {
		checks["users_file"] = "ok"
		if err := s.users.Err(); err != nil {
			checks["users_file"] = "reload failed, previous users in service: " + err.Error()
			ok = false
		}
	}
	if s.certs != nil && s.cfg.TLSCert != "" {
		checks["tls"] = "ok"
		if err := s.certs.Err(); err != nil {
			checks["tls"] = "reload failed, previous certificate in service: " + err.Error()
			ok = false
		}
	}
	return ok
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ok, checks := s.Ready()
	body := readiness{Status: "ok", Checks: checks}
	code := http.StatusOK
	if !ok {
		body.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
