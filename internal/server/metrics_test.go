package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// TestMetricsCountRefusalsAndStoreErrors: a connection over
// --max-connections is counted as refused with reason "limit", and a
// delivery the store cannot make (new/ replaced by a file) as a 4xx message
// and a store error of op "deliver".
func TestMetricsCountRefusalsAndStoreErrors(t *testing.T) {
	s := opsServer(t, func(c *config.Config) {
		c.MaxConnections = 1
		c.WebDisable = true
	})
	send(t, s, "creates the mailbox")

	// The slot of that delivery's session comes free once the server has
	// closed it, which may be just after the client saw 221.
	var a *testsupport.Conn
	for try := 0; ; try++ {
		a = faultDial(t, s.Listener("smtp"))
		l, err := a.ReadLine()
		if strings.HasPrefix(l, "220 ") {
			break
		}
		if !strings.HasPrefix(l, "421 ") || try == 100 {
			t.Fatalf("first connection: %q %v", l, err)
		}
		a.Close()
		time.Sleep(10 * time.Millisecond)
	}
	rejected := scrape(t, s)[`postoffice_connections_rejected_total{proto="smtp",reason="limit"}`]
	b := faultDial(t, s.Listener("smtp"))
	b.ExpectReply("421 *")
	waitMetric(t, s, `postoffice_connections_rejected_total{proto="smtp",reason="limit"}`, func(v float64) bool { return v == rejected+1 })

	newDir := filepath.Join(s.cfg.MailboxDir, "user", "new")
	if err := os.Rename(newDir, newDir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.Send("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
	a.ExpectReply("250 *")
	a.ExpectReply("250 *")
	a.ExpectReply("250 *")
	a.ExpectReply("354 *")
	a.Send("Subject: refused\r\n\r\nbody\r\n.\r\n")
	a.ExpectReply("451 4.3.0 *")
	m := scrape(t, s)
	for series, want := range map[string]float64{
		`postoffice_store_errors_total{op="deliver"}`: 1,
		`postoffice_smtp_messages_total{class="4xx"}`: 1,
		`postoffice_smtp_messages_total{class="2xx"}`: 1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
}
