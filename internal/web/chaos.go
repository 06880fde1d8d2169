package web

import (
	"io"
	"net/http"
)

// ChaosControl is the fault-injection rule set the chaos API shows and
// changes (internal/chaos.Engine); see docs/api.md, "Chaos".
type ChaosControl interface {
	// ChaosView returns the rules in force, as JSON-encodable value.
	ChaosView() any
	// SetChaos validates a JSON rule set and puts it in force; an error
	// says what is wrong with it (answered 400) and changes nothing.
	SetChaos(body []byte) error
	// ClearChaos removes every rule.
	ClearChaos()
}

// chaosAccess decides who may use the chaos API, which makes the SMTP
// server misbehave on purpose: without a web login (no users file) only
// through a loopback HTTP listener, where only local tools reach it; with a
// users file, any logged-in user may read the rules and only the admin may
// change them. It returns 0 when the request may go on, else the HTTP
// status and the error to answer.
func chaosAccess(listenerLoopback, usersFile bool, p principal, loggedIn, write bool) (int, string) {
	switch {
	case !usersFile && !listenerLoopback:
		return http.StatusForbidden, "the chaos API is refused: the HTTP listener is not on loopback and there is no web login (--users-file)"
	case !loggedIn:
		return http.StatusUnauthorized, "login required"
	case write && !p.admin:
		return http.StatusForbidden, "only the web admin (--web-admin) may change chaos rules"
	}
	return 0, ""
}

// chaos wraps a chaos handler with chaosAccess.
func (h *Handler) chaos(write bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.Chaos == nil {
			writeError(w, http.StatusNotFound, "chaos is not available on this server")
			return
		}
		p, ok := h.who(r)
		if code, msg := chaosAccess(h.opts.ListenerLoopback, h.opts.UsersFile, p, ok, write); code != 0 {
			writeError(w, code, msg)
			return
		}
		next(w, r)
	}
}

// getChaos is GET /api/v1/chaos.
func (h *Handler) getChaos(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.opts.Chaos.ChaosView())
}

// putChaos is PUT /api/v1/chaos: the body replaces the rules in force.
func (h *Handler) putChaos(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if err := h.opts.Chaos.SetChaos(body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.log.Warn("chaos rules set through the API", "remote", r.RemoteAddr, "user", principalName(h, r))
	writeJSON(w, http.StatusOK, h.opts.Chaos.ChaosView())
}

// deleteChaos is DELETE /api/v1/chaos: no rules, SMTP answers as usual.
func (h *Handler) deleteChaos(w http.ResponseWriter, r *http.Request) {
	h.opts.Chaos.ClearChaos()
	h.log.Info("chaos rules cleared through the API", "remote", r.RemoteAddr, "user", principalName(h, r))
	writeJSON(w, http.StatusOK, h.opts.Chaos.ChaosView())
}

func principalName(h *Handler, r *http.Request) string {
	p, _ := h.who(r)
	return p.user
}
