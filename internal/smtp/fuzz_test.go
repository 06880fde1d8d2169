package smtp

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"postoffice/internal/testsupport"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// panicWatch is a slog.Handler that records "panic" log records, so that a
// panic the session recovered still fails the fuzz target.
type panicWatch struct{ seen atomic.Pointer[string] }

// exchange sends in to the server at addr, reads every reply, and fails
// the test if the server hung or a session panicked. The error is nil or
// a connection reset (the server closed while input was unread).
func (w *panicWatch) exchange(t *testing.T, addr string, in []byte) ([]byte, error) {
	t.Helper()
	out, err := testsupport.Exchange(t, addr, in)
	if err != nil && !testsupport.IsReset(err) {
		t.Fatalf("reading replies: %v (hang?)", err)
	}
	if p := w.seen.Load(); p != nil {
		t.Fatalf("session panicked: %s", *p)
	}
	return out, err
}

func (h *panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var stack string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "stack" || a.Key == "panic" {
				stack += a.Value.String() + "\n"
			}
			return true
		})
		h.seen.Store(&stack)
	}
	return nil
}
func (h *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicWatch) WithGroup(string) slog.Handler      { return h }

// sessionSeeds are client transcripts covering every command in every
// state.
var sessionSeeds = []string{
	"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nSubject: t\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
	"EHLO x\r\nMAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<Postmaster>\r\nDATA\r\nx\n.\nMAIL FROM:<e@v>\r\n.\r\nRSET\r\nQUIT\r\n",
	"EHLO x\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<a@b>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nQUIT\r\n",
	"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nBDAT 2000\r\n" + strings.Repeat("x", 2000) + "BDAT 1 LAST\r\nyDATA\r\n",
	"MAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\nBDAT 1\r\nxRSET\r\nNOOP\r\nVRFY x\r\nEXPN x\r\nHELP\r\nSTARTTLS\r\nAUTH PLAIN\r\nFOO\r\n\r\nQUIT\r\n",
	"EHLO x\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\nAUTH LOGIN\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\n",
	"EHLO x\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nAUTH LOGIN dXNlcg==\r\n!!\r\n",
	"EHLO x\r\nMAIL FROM:<jö@b> SMTPUTF8\r\nRCPT TO:<@a,@b:ü@c>\r\nRCPT TO:<\"q\\\"x\"@[IPv6:::1]>\r\nDATA\r\n\x00\xff\r\r\n.\r\n",
	"EHLO x\r\nMAIL FROM:<a@b> SIZE=99999999999999999999\r\nMAIL FROM:<a@b> RET=HDRS\r\nBDAT x\r\n",
	"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\n" + strings.Repeat("y", 1500) + "\r\n.\r\nQUIT\r\n",
	strings.Repeat("z", 3000) + "\r\nNOOP\r\n",
	"ehlo x\nmail from:<a@b>\nrcpt to:<c@d>\ndata\nbody\n.\r\nquit\n",
}

// FuzzSession feeds arbitrary bytes as a whole client transcript to a
// session over loopback: it must neither panic nor hang.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s))
	}
	watch := &panicWatch{}
	be := &discardBackend{newBackend()}
	srv := &Server{
		Hostname:        "mx.test",
		Backend:         be,
		Logger:          slog.New(watch),
		AuthEnabled:     true,
		MaxMessageBytes: 1000,
		MaxErrors:       5,
		CommandTimeout:  5 * time.Second,
		DataTimeout:     5 * time.Second,
	}
	addr := testsupport.Serve(f, srv, ErrServerClosed)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _ := watch.exchange(t, addr, in)
		// Every reply line is well-formed.
		for _, l := range strings.SplitAfter(string(out), "\r\n") {
			if l == "" {
				continue
			}
			if len(l) < 6 || !strings.HasSuffix(l, "\r\n") || l[3] != ' ' && l[3] != '-' {
				t.Fatalf("malformed reply line %q", l)
			}
		}
	})
}

// FuzzParsePath checks the path and parameter parser.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"FROM:<>", "FROM:<a@b>", "FROM: <a@b> SIZE=10 BODY=8BITMIME", "FROM:<@x,@y:a@b>",
		`FROM:<"a b\"c"@d>`, "FROM:<a@[1.2.3.4]>", "FROM:<a@[IPv6:::1]>", "FROM:<a@[tag:x]>",
		"FROM:<jö@ü.de> SMTPUTF8", "FROM:<a@b>x", "FROM:<a@b> =x", "FROM:<a..b@c>", "FROM:<a@b-.c>",
		"FROM:<a@b> K=v K=w", "TO:<postmaster>", "FROM:<\xff@b>", "FROM:<a@b> SIZE=1 AUTH=<>",
		"FROM:<" + strings.Repeat("a", 250) + "@b.c>", "FROM:<@" + strings.Repeat("r", 250) + ":a@b>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, nonASCII, params, err := parsePathArg(s, "FROM:")
		if err != nil {
			return
		}
		if !utf8.ValidString(addr) {
			t.Fatalf("invalid UTF-8 address %q", addr)
		}
		ascii := true
		for i := 0; i < len(addr); i++ {
			if addr[i] >= utf8.RuneSelf {
				ascii = false
			}
		}
		if ascii == nonASCII {
			t.Fatalf("nonASCII = %v for %q", nonASCII, addr)
		}
		if addr != "" && (strings.Count(addr, "@") < 1 || strings.ContainsAny(addr, "<> \r\n") && !strings.HasPrefix(addr, `"`)) {
			t.Fatalf("odd address %q from %q", addr, s)
		}
		// The address parses again to itself.
		again, _, _, err := parsePathArg("FROM:<"+addr+">", "FROM:")
		if err != nil || again != addr {
			t.Fatalf("reparse of %q: %q, %v", addr, again, err)
		}
		for _, p := range params {
			if p.Key == "" || p.Key != strings.ToUpper(p.Key) || strings.ContainsAny(p.Key+p.Value, " =\r\n") {
				t.Fatalf("bad param %+v from %q", p, s)
			}
		}
	})
}
