package web

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of every endpoint under
// /api/v1/ (openapi.json beside this file). openapi_test.go checks it
// against the routes registered here and in internal/server, and
// validates real requests and answers of every endpoint against it, so it
// cannot drift from the code: a new endpoint needs its path there and a
// case in that test.
//
//go:embed openapi.json
var openAPIDocument []byte

// getOpenAPI serves the document. It needs no login: it tells nothing
// about the mailboxes.
func (h *Handler) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPIDocument)
}
