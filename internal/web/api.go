package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"postoffice/internal/store"
)

// Pagination of message listings.
const (
	defaultPerPage = 50
	maxPerPage     = 500
	maxDeleteIDs   = 1000
)

// writeJSON sends v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := marshalJSON(v)
	if err != nil {
		data, _ = marshalJSON(map[string]string{"error": "internal error"})
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}

// marshalJSON is json.Marshal (HTML characters escaped) for every JSON
// document the web API sends, with every NUL removed from its strings. A
// message may hold NUL octets (SMTP keeps them unless
// --smtp-bare-newline=reject), but NUL is not text (RFC 5322 §3.5: text
// excludes %d0, which only the obsolete syntax of §4.1 allows), and
// "\u0000" breaks clients that keep strings NUL-terminated.
func marshalJSON(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return stripJSONNUL(data), nil
}

// stripJSONNUL removes every escape \u0000 from encoded JSON, in place.
// Outside strings JSON has no backslash, and inside them every backslash
// starts an escape, so stepping over each escape finds exactly the NULs
// ("\\u0000", an escaped backslash then text, stays).
func stripJSONNUL(data []byte) []byte {
	const nul = `\u0000`
	out := data[:0]
	r := 0
	for {
		i := bytes.IndexByte(data[r:], '\\')
		if i < 0 {
			return append(out, data[r:]...)
		}
		out = append(out, data[r:r+i]...)
		r += i
		if bytes.HasPrefix(data[r:], []byte(nul)) {
			r += len(nul)
			continue
		}
		e := min(r+2, len(data))
		out = append(out, data[r:e]...)
		r = e
	}
}

// writeError sends {"error": msg} with status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// storeError maps a store error to an HTTP answer.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such message")
	case errors.Is(err, store.ErrBadMailbox):
		writeError(w, http.StatusBadRequest, "invalid mailbox name")
	case errors.Is(err, store.ErrLocked):
		writeError(w, http.StatusConflict, "the mailbox is locked by a POP3 session; try again after it ends")
	case errors.Is(err, store.ErrUnavailable):
		// The shared store's PostgreSQL or S3 failed: temporary.
		h.log.Warn("web: store unavailable", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "storage temporarily unavailable; try again")
	default:
		h.log.Error("web: store error", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// mailbox validates the {mailbox} (and {id} when present) path values and
// checks that the principal may see the mailbox. A mailbox the user may not
// see is answered 404, like one that does not exist, so names do not leak.
func (h *Handler) mailbox(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mb := r.PathValue("mailbox")
		if !store.ValidMailboxName(mb) {
			writeError(w, http.StatusBadRequest, "invalid mailbox name")
			return
		}
		if !principalOf(r).mayRead(mb) {
			writeError(w, http.StatusNotFound, "no such mailbox")
			return
		}
		if id := r.PathValue("id"); id != "" && !store.ValidID(id) {
			writeError(w, http.StatusBadRequest, "invalid message id")
			return
		}
		next(w, r, mb)
	}
}

// mailboxJSON is one mailbox of GET /api/v1/mailboxes.
type mailboxJSON struct {
	Name     string `json:"name"`
	Messages int    `json:"messages"`
	Unread   int    `json:"unread"`
	Size     int64  `json:"size"`
}

func (h *Handler) listMailboxes(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	var infos []store.MailboxInfo
	if p.admin {
		var err error
		if infos, err = h.mail.Mailboxes(); err != nil {
			h.storeError(w, r, err)
			return
		}
	}
	if p.user != "" && !slices.ContainsFunc(infos, func(i store.MailboxInfo) bool { return i.Name == p.user }) {
		info, err := h.mail.Mailbox(p.user)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		infos = append(infos, info)
	}
	out := make([]mailboxJSON, 0, len(infos))
	for _, i := range infos {
		out = append(out, mailboxJSON{Name: i.Name, Messages: i.Messages, Unread: i.Unseen, Size: i.Size})
	}
	writeJSON(w, http.StatusOK, map[string]any{"mailboxes": out})
}

// summaryJSON is a message of a listing.
type summaryJSON struct {
	ID          string     `json:"id"`
	Mailbox     string     `json:"mailbox"`
	From        string     `json:"from"`
	To          []string   `json:"to"`
	Subject     string     `json:"subject"`
	Date        *time.Time `json:"date"`
	Received    time.Time  `json:"received"`
	Size        int64      `json:"size"`
	Attachments bool       `json:"attachments"`
	Read        bool       `json:"read"`
}

func toSummaryJSON(mb string, s store.Summary) summaryJSON {
	j := summaryJSON{ID: s.ID, Mailbox: mb, From: s.From, To: s.To, Subject: s.Subject,
		Received: s.Received.UTC(), Size: s.Size, Attachments: s.Attachments, Read: s.Seen}
	if j.To == nil {
		j.To = []string{}
	}
	if !s.Date.IsZero() {
		d := s.Date
		j.Date = &d
	}
	return j
}

// intParam parses a positive integer query parameter with a default.
func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s must be a positive integer", name)
	}
	return n, nil
}

func (h *Handler) listMessages(w http.ResponseWriter, r *http.Request, mb string) {
	page, err := intParam(r, "page", 1)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	perPage, err := intParam(r, "per_page", defaultPerPage)
	if err != nil || perPage > maxPerPage {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("per_page must be 1-%d", maxPerPage))
		return
	}
	if page > 1<<30/perPage {
		writeError(w, http.StatusBadRequest, "page is too large")
		return
	}
	q, err := store.ParseQuery(r.URL.Query().Get("q"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "q: "+err.Error())
		return
	}
	res, err := h.mail.List(mb, q, (page-1)*perPage, perPage)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	out := make([]summaryJSON, 0, len(res.Messages))
	for _, s := range res.Messages {
		out = append(out, toSummaryJSON(mb, s))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"mailbox": mb, "total": res.Total, "page": page, "per_page": perPage, "messages": out,
	})
}

// readMessage reads the raw content of a message (at most maxViewBytes).
func (h *Handler) readMessage(mb, id string) ([]byte, store.Summary, error) {
	rc, sum, err := h.mail.Open(mb, id)
	if err != nil {
		return nil, sum, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxViewBytes))
	return raw, sum, err
}

// messageJSON is the full view of one message. Its Attachments (the
// list of attachment parts) hides the embedded summary's boolean of the
// same JSON name: encoding/json keeps the shallower field. That is the
// API (docs/api.md, GET .../messages/{id}; the UI reads the list here and
// the boolean in listings), not an accident to fix.
type messageJSON struct {
	summaryJSON
	Envelope struct {
		ReturnPath string   `json:"return_path"`
		Recipients []string `json:"recipients"`
	} `json:"envelope"`
	Cc            []string `json:"cc"`
	Headers       []Header `json:"headers"`
	Parts         *Part    `json:"parts"`
	Text          string   `json:"text"`
	HTML          string   `json:"html"`
	RemoteContent bool     `json:"remote_content"`
	Attachments   []*Part  `json:"attachments"`
	Problems      []string `json:"problems"`
	Truncated     bool     `json:"truncated"`
}

// partURL returns the URL path of a part download.
func partURL(mb, id, part string) string {
	return "/api/v1/mailboxes/" + url.PathEscape(mb) + "/messages/" + url.PathEscape(id) + "/parts/" + part
}

func (h *Handler) getMessage(w http.ResponseWriter, r *http.Request, mb string) {
	out, err := h.messageView(mb, r.PathValue("id"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// messageView reads message id of mailbox mb and returns its full view
// (GET .../messages/{id}, wait, latest).
func (h *Handler) messageView(mb, id string) (messageJSON, error) {
	var out messageJSON
	raw, sum, err := h.readMessage(mb, id)
	if err != nil {
		return out, err
	}
	p := parseMessage(raw)
	out.summaryJSON = toSummaryJSON(mb, sum)
	out.Envelope.ReturnPath, out.Envelope.Recipients = envelope(p.Headers)
	if out.Envelope.Recipients == nil {
		out.Envelope.Recipients = []string{}
	}
	out.Cc = []string{}
	for _, hd := range p.Headers {
		if strings.EqualFold(hd.Name, "cc") {
			out.Cc = append(out.Cc, formatAddressList(hd.Value)...)
		}
	}
	out.Headers, out.Parts, out.Text = p.Headers, p.Root, p.Text
	if out.Headers == nil {
		out.Headers = []Header{}
	}
	if p.HTML != "" {
		s := sanitizeHTML(p.HTML, p.cids, func(part string) string { return partURL(mb, id, part) }, false)
		out.HTML, out.RemoteContent = s.HTML, s.Remote
	}
	out.Attachments = p.Attachments
	if out.Attachments == nil {
		out.Attachments = []*Part{}
	}
	out.Problems = p.Problems
	if out.Problems == nil {
		out.Problems = []string{}
	}
	out.Truncated = sum.Size > maxViewBytes
	return out, nil
}

func (h *Handler) getRaw(w http.ResponseWriter, r *http.Request, mb string) {
	id := r.PathValue("id")
	rc, sum, err := h.mail.Open(mb, id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Length", strconv.FormatInt(sum.Size, 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id + ".eml"}))
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Header().Set("Cache-Control", "no-store")
	io.Copy(w, rc)
}

// getPart sends one MIME part, decoded, as a download (or inline for
// images, which the HTML view embeds by cid:). The sandbox CSP keeps an
// HTML or SVG attachment opened in a tab from running script.
func (h *Handler) getPart(w http.ResponseWriter, r *http.Request, mb string) {
	id, path := r.PathValue("id"), r.PathValue("part")
	raw, _, err := h.readMessage(mb, id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	part, body, err := openPart(raw, path)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such part")
		return
	}
	ct := part.ContentType
	params := map[string]string{}
	if strings.HasPrefix(ct, "text/") {
		params["charset"] = "utf-8" // go-message decoded it
	}
	if mime.FormatMediaType(ct, params) == "" {
		ct = "application/octet-stream"
	}
	name := part.Filename
	if name == "" {
		name = "part-" + path
		if exts, _ := mime.ExtensionsByType(ct); len(exts) > 0 {
			name += exts[0]
		}
	}
	disp := "attachment"
	if strings.HasPrefix(ct, "image/") && ct != "image/svg+xml" && r.URL.Query().Get("download") == "" {
		disp = "inline"
	}
	w.Header().Set("Content-Type", mime.FormatMediaType(ct, params))
	w.Header().Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	io.Copy(w, body)
}

// htmlFrame wraps a sanitized body for the iframe.
var htmlFrame = template.Must(template.New("frame").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<base target="_blank">
<style>body{margin:8px;font:14px/1.45 system-ui,sans-serif;color:#111;background:#fff;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>
</head><body>{{.}}</body></html>
`))

// getHTML serves the HTML body, sanitized, for the sandboxed iframe of the
// UI, with a Content-Security-Policy that forbids script, forms, frames and
// every fetch except images from this server and data: URLs; with
// ?remote=1 images may come from anywhere (the user clicked "load remote
// content").
func (h *Handler) getHTML(w http.ResponseWriter, r *http.Request, mb string) {
	id := r.PathValue("id")
	raw, _, err := h.readMessage(mb, id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	p := parseMessage(raw)
	if p.HTML == "" {
		writeError(w, http.StatusNotFound, "the message has no HTML body")
		return
	}
	remote := r.URL.Query().Get("remote") == "1"
	s := sanitizeHTML(p.HTML, p.cids, func(part string) string { return partURL(mb, id, part) }, remote)
	img := "'self' data:"
	if remote {
		img = "* data:"
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src "+img+"; style-src 'unsafe-inline'; "+
		"font-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "+
		"sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	htmlFrame.Execute(&buf, template.HTML(s.HTML))
	w.Write(buf.Bytes())
}

func (h *Handler) deleteMessage(w http.ResponseWriter, r *http.Request, mb string) {
	id := r.PathValue("id")
	deleted, err := h.mail.Delete(mb, []string{id})
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	if len(deleted) == 0 {
		writeError(w, http.StatusNotFound, "no such message")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteMessages deletes many: {"ids": [...]} or {"all": true}, or
// without a body the messages matching ?q= (every message without q).
func (h *Handler) deleteMessages(w http.ResponseWriter, r *http.Request, mb string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	_, hasQ := r.URL.Query()["q"]
	if len(bytes.TrimSpace(body)) == 0 {
		h.deleteByQuery(w, r, mb)
		return
	}
	if hasQ {
		writeError(w, http.StatusBadRequest, "give either q or a JSON body, not both")
		return
	}
	var req struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "want {\"ids\": [...]} or {\"all\": true}")
		return
	}
	if req.All == (len(req.IDs) > 0) {
		writeError(w, http.StatusBadRequest, "give either ids or all")
		return
	}
	if len(req.IDs) > maxDeleteIDs {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("at most %d ids per request", maxDeleteIDs))
		return
	}
	for _, id := range req.IDs {
		if !store.ValidID(id) {
			writeError(w, http.StatusBadRequest, "invalid message id")
			return
		}
	}
	if req.All {
		res, err := h.mail.List(mb, store.Query{}, 0, 1<<31-1)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		for _, s := range res.Messages {
			req.IDs = append(req.IDs, s.ID)
		}
	}
	deleted, err := h.mail.Delete(mb, req.IDs)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	var missing []string
	for _, id := range req.IDs {
		if !slices.Contains(deleted, id) {
			missing = append(missing, id)
		}
	}
	if deleted == nil {
		deleted = []string{}
	}
	if missing == nil {
		missing = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": deleted, "not_found": missing})
}

// deleteByQuery deletes the messages matching ?q= (every message without
// q) and answers {"deleted": N}. All of them go in one store call, under
// one take of the maildrop lock: while a POP3 session holds it, 409 and
// nothing is deleted (store.Browser.Delete).
func (h *Handler) deleteByQuery(w http.ResponseWriter, r *http.Request, mb string) {
	q, err := store.ParseQuery(r.URL.Query().Get("q"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "q: "+err.Error())
		return
	}
	res, err := h.mail.List(mb, q, 0, 1<<31-1)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	if len(res.Messages) == 0 {
		writeJSON(w, http.StatusOK, map[string]int{"deleted": 0})
		return
	}
	ids := make([]string, 0, len(res.Messages))
	for _, s := range res.Messages {
		ids = append(ids, s.ID)
	}
	deleted, err := h.mail.Delete(mb, ids)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": len(deleted)})
}

// patchMessage sets the read flag: {"read": true|false}.
func (h *Handler) patchMessage(w http.ResponseWriter, r *http.Request, mb string) {
	var req struct {
		Read *bool `json:"read"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Read == nil {
		writeError(w, http.StatusBadRequest, "want {\"read\": true} or {\"read\": false}")
		return
	}
	sum, err := h.mail.SetSeen(mb, r.PathValue("id"), *req.Read)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSummaryJSON(mb, sum))
}
