package web_test

// The browser test drives the whole server (SMTP, POP3 and the web inbox on
// loopback) with real headless Chromium through chromedp. It needs Debian's
// chromium package (apt-get install -y chromium) and is skipped without it.
// With POSTOFFICE_SCREENSHOTS=1 it writes docs/screenshots/inbox.png and
// docs/screenshots/message.png.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/smtp"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"postoffice/internal/server"
	"postoffice/internal/testsupport"
)

// chromiumPath finds a Chromium binary, or "".
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func startServer(t *testing.T) *server.Server {
	t.Helper()
	return testsupport.StartServer(t, testsupport.Config(t), server.New)
}

// pop3Stat logs in as user/pass and returns the STAT reply.
func pop3Stat(t *testing.T, addr string) string {
	t.Helper()
	c := testsupport.Dial(t, addr)
	defer c.Close()
	c.POP3Login("user", "pass")
	stat := c.Cmd("STAT", "+OK*").Last()
	c.Cmd("QUIT", "+OK*")
	return stat
}

func TestBrowser(t *testing.T) {
	exe := chromiumPath()
	if exe == "" {
		t.Skip("no chromium binary found (Debian: apt-get install -y chromium); skipping the browser test")
	}
	s := startServer(t)
	// The browser talks to the server through a proxy that holds the
	// mailbox and list requests until the test releases them, so that the
	// inbox's "Loading…" state is seen for sure.
	target, _ := url.Parse("http://" + s.Listener("http").Addr().String())
	proxy := httputil.NewSingleHostReverseProxy(target)
	release := make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/mailboxes") {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer gate.Close()
	base := gate.URL

	// The "remote" image host counts its requests.
	var imageHits atomic.Int32
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		imageHits.Add(1)
		w.Header().Set("Content-Type", "image/gif")
		w.Write([]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"))
	}))
	defer img.Close()

	downloads := t.TempDir()
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 720),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	shots := t.TempDir()
	if os.Getenv("POSTOFFICE_SCREENSHOTS") == "1" {
		shots = filepath.Join("..", "..", "docs", "screenshots")
		os.MkdirAll(shots, 0o755)
	}

	smtpAddr := s.Listener("smtp").Addr().String()
	send := func(subject, body string, extra string) {
		t.Helper()
		msg := "From: Alice Example <alice@example.com>\r\nTo: user@example.com\r\nSubject: " + subject +
			"\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\n" + extra + "\r\n" + body
		if err := smtp.SendMail(smtpAddr, nil, "alice@example.com", []string{"user@example.com"}, []byte(msg)); err != nil {
			t.Fatal("SMTP:", err)
		}
	}
	// The inbox while its list loads: "Loading…" and "Select a message";
	// once loaded, the empty mailbox says "No messages yet".
	if err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior:     browser.SetDownloadBehaviorBehaviorAllowAndName,
				DownloadPath: downloads,
			})
			return err
		}),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("app")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="loading" and .="Loading…"]`)),
		chromedp.WaitVisible(chromedp.Search(`//section[@id="placeholder"]//p[.="Select a message"]`)),
		chromedp.WaitNotVisible(chromedp.ID("empty")),
	); err != nil {
		t.Fatal("inbox loading:", err)
	}
	close(release)
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.Search(`//p[@id="empty" and .="No messages yet"]`)),
		chromedp.WaitNotVisible(chromedp.ID("loading")),
		chromedp.WaitVisible(chromedp.CSS("#live.on")),
	); err != nil {
		t.Fatal("empty inbox:", err)
	}

	// A few messages so the inbox screenshot shows a list; they arrive
	// live.
	send("Welcome to Postoffice", "Hello!\r\nThis inbox shows every message delivered over SMTP.\r\n", "Content-Type: text/plain; charset=utf-8\r\n")
	send("Build #1432 passed", "All 312 tests passed.\r\n", "Content-Type: text/plain\r\n")

	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.Search(`//ul[@id="list"]/li[contains(., "Build #1432 passed")]`)),
		chromedp.WaitVisible(chromedp.CSS("#list li")),
		chromedp.WaitNotVisible(chromedp.ID("empty")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="placeholder-text" and .="Select a message"]`)),
	); err != nil {
		t.Fatal("open inbox:", err)
	}

	// Deliver over SMTP while the page is open: it appears without reload.
	html := "<html><body><h1 id=\"greeting\">Quarterly report</h1><p>Hello <b>Bob</b>, the numbers are in.</p>" +
		"<script>document.title='pwned';parent.document.title='pwned'</script>" +
		"<img id=\"remote\" src=\"" + img.URL + "/pixel.gif\" alt=\"tracker\"></body></html>"
	body := "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n" +
		"--b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n" +
		"attached notes\r\n--b1--\r\n"
	send("Quarterly report", body, "Content-Type: multipart/mixed; boundary=\"b1\"\r\n")

	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.Search(`//ul[@id="list"]/li[contains(., "Quarterly report")]`)),
	); err != nil {
		t.Fatal("live arrival:", err)
	}
	if err := screenshot(ctx, filepath.Join(shots, "inbox.png")); err != nil {
		t.Fatal(err)
	}

	// Open it (keyboard: the newest is first; j/k move, Enter opens).
	if err := chromedp.Do(ctx,
		chromedp.KeyEvent("j"),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("view")),
		chromedp.WaitVisible(chromedp.ID("remote-note")),
		chromedp.WaitNotVisible(chromedp.ID("placeholder")),
	); err != nil {
		t.Fatal("open message:", err)
	}
	frameHTML, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const d = document.getElementById('html-frame').contentDocument;
			return d && d.getElementById('greeting') ? d.body.innerHTML : null })()`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatal("html frame:", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if title == "pwned" || strings.Contains(frameHTML, "<script") {
		t.Fatalf("script ran or survived: title %q, frame %q", title, frameHTML)
	}
	frameTitle, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('html-frame').contentDocument.title`))
	if err != nil || frameTitle == "pwned" {
		t.Fatal("script ran inside the frame")
	}
	time.Sleep(300 * time.Millisecond)
	if n := imageHits.Load(); n != 0 {
		t.Fatalf("remote image fetched %d times before it was allowed", n)
	}
	if err := screenshot(ctx, filepath.Join(shots, "message.png")); err != nil {
		t.Fatal(err)
	}

	// Allow remote content: now the image is fetched.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("load-remote"))); err != nil {
		t.Fatal("load remote content:", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const d = document.getElementById('html-frame').contentDocument;
			const i = d && d.getElementById('remote'); return !!(i && i.complete && i.naturalWidth > 0) })()`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatal("load remote content:", err)
	}
	if imageHits.Load() == 0 {
		t.Fatal("remote image not fetched after load remote content")
	}

	// Download the attachment.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-tab="attachments"]`)),
		chromedp.Click(chromedp.CSS(`#v-attachments a`)),
	); err != nil {
		t.Fatal("download:", err)
	}
	var got []byte
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && got == nil {
		entries, _ := os.ReadDir(downloads)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".crdownload") {
				continue
			}
			got, _ = os.ReadFile(filepath.Join(downloads, e.Name()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.TrimSpace(string(got)) != "attached notes" {
		t.Fatalf("downloaded attachment = %q", got)
	}

	// Delete it from the UI: gone from the list and from POP3.
	pop3Addr := s.Listener("pop3").Addr().String()
	before := pop3Stat(t, pop3Addr)
	if !strings.HasPrefix(before, "+OK 3 ") {
		t.Fatalf("POP3 STAT before delete: %q", before)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("delete")),
		chromedp.WaitNotPresent(chromedp.Search(`//ul[@id="list"]/li[contains(., "Quarterly report")]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="placeholder-text" and .="Select a message"]`)),
	); err != nil {
		t.Fatal("delete:", err)
	}
	if after := pop3Stat(t, pop3Addr); !strings.HasPrefix(after, "+OK 2 ") {
		t.Fatalf("POP3 STAT after delete: %q", after)
	}
}

// screenshot saves the viewport as PNG.
func screenshot(ctx context.Context, path string) error {
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}
