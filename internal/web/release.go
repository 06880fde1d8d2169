package web

// POST /api/v1/mailboxes/{mailbox}/messages/{id}/release: a stored message
// handed, unchanged, to another SMTP server (internal/relay), only to the
// recipients and targets the operator allows. docs/api.md, "Release".

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"postoffice/internal/relay"
)

// releaseRequest is the body of a release.
type releaseRequest struct {
	To   []string `json:"to"`
	Addr string   `json:"addr"`
	From *string  `json:"from"`
}

// release relays the stored message to the recipients of the request
// through the target of the request (or --relay-addr). The message goes
// as stored, less its leading Return-Path fields (RFC 5321 §4.4, see
// relay.Info.Skip) and its X-Original-To fields (the original envelope
// recipients, Bcc ones too, are not for the new ones); no trace field is
// added (the message's own Received
// from its arrival stays). The envelope sender is the stored Return-Path
// unless the request gives "from". Whoever may read the mailbox may
// release from it.
func (h *Handler) release(w http.ResponseWriter, r *http.Request, mb string) {
	pol := h.opts.RelayPolicy
	if !pol.Enabled() || h.opts.Relay == nil {
		writeError(w, http.StatusForbidden, "release is disabled: no recipient is allowed (--relay-allow)")
		return
	}
	var req releaseRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "want {\"to\": [...], \"addr\": \"host:port\" (optional), \"from\": \"...\" (optional)}: "+err.Error())
		return
	}
	if len(req.To) == 0 {
		writeError(w, http.StatusBadRequest, "to: at least one recipient is required")
		return
	}
	if len(req.To) > h.maxRecipients() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("to: at most %d recipients (--max-recipients)", h.maxRecipients()))
		return
	}
	to := make([]string, 0, len(req.To))
	for i, s := range req.To {
		a, err := parseAddress(fmt.Sprintf("to[%d]", i), s)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if !pol.Recipient(a.Address) {
			writeJSON(w, http.StatusForbidden, map[string]any{
				"error": "recipient " + a.Address + " is not allowed by --relay-allow", "recipient": a.Address})
			return
		}
		to = append(to, a.Address)
	}
	target, ok := pol.Target(req.Addr)
	if !ok {
		if req.Addr == "" {
			writeError(w, http.StatusBadRequest, "addr: no relay target: give \"addr\" or set --relay-addr")
			return
		}
		writeError(w, http.StatusForbidden, "addr: "+req.Addr+" is neither --relay-addr nor listed in --relay-allow-addr")
		return
	}
	if req.From != nil && *req.From != "" {
		a, err := parseAddress("from", *req.From)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		*req.From = a.Address
	}

	id := r.PathValue("id")
	rc, _, err := h.mail.Open(mb, id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	info, err := relay.Inspect(rc)
	rc.Close()
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	from := info.ReturnPath
	if req.From != nil {
		from = *req.From
	}
	if strings.ContainsAny(from, "\r\n\x00<>") {
		from = "" // a Return-Path not of our making; send the null path
	}
	rc, _, err = h.mail.Open(mb, id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, info.Skip); err != nil {
		h.storeError(w, r, err)
		return
	}
	utf8 := info.UTF8Header || !isASCII(from)
	for _, a := range to {
		utf8 = utf8 || !isASCII(a)
	}
	res, err := h.opts.Relay.Send(r.Context(), target, relay.Message{
		From: from, To: to, Size: info.Size, EightBit: info.EightBit, UTF8: utf8,
		Body: io.LimitReader(relay.Without(rc, info.Skip, info.Drops), info.Size),
	})
	if err != nil {
		h.releaseError(w, r, mb, id, target, err)
		return
	}
	h.log.Info("message released", "mailbox", mb, "id", id, "addr", target, "rcpts", len(to), "from", from, "tls", res.TLS, "reply", res.Reply)
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "mailbox": mb, "addr": target, "from": from, "to": to, "tls": res.TLS, "reply": res.Reply,
	})
}

// releaseError answers a failed relay with 502 and what went wrong: the
// step, the refused recipient, and the far server's reply verbatim.
func (h *Handler) releaseError(w http.ResponseWriter, r *http.Request, mb, id, target string, err error) {
	var re *relay.Error
	if !errors.As(err, &re) {
		h.log.Error("web: release failed", "mailbox", mb, "id", id, "addr", target, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h.log.Warn("release failed", "mailbox", mb, "id", id, "addr", target, "err", err)
	body := map[string]any{"error": "relay " + target + ": " + re.Error(), "stage": re.Stage, "addr": target}
	if re.Recipient != "" {
		body["recipient"] = re.Recipient
	}
	if re.Reply != nil {
		body["smtp"] = SMTPReply{Code: re.Reply.Code, Enhanced: re.Reply.Enhanced, Message: re.Reply.Message}
	}
	writeJSON(w, http.StatusBadGateway, body)
}
