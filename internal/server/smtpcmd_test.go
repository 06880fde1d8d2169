package server

import (
	"strings"
	"testing"

	"postoffice/internal/config"
)

// TestSMTPCommandSettingsWired: --max-junk-commands (0: no limit) and
// --smtp-require-helo reach the SMTP engine.
func TestSMTPCommandSettingsWired(t *testing.T) {
	s := opsServer(t, func(c *config.Config) {
		c.MaxJunkCommands = 2
		c.SMTPRequireHelo = true
		c.WebDisable = true
	})
	c := faultDial(t, s.Listener("smtp"))
	c.ExpectReply("220 *")
	c.Send("MAIL FROM:<a@test>\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
	c.ExpectReply("503 5.5.1 *")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("421 4.7.0 *")
	c.ExpectClosed()

	s = opsServer(t, func(c *config.Config) {
		c.MaxJunkCommands = 0
		c.WebDisable = true
	})
	c = faultDial(t, s.Listener("smtp"))
	c.ExpectReply("220 *")
	c.Send(strings.Repeat("NOOP\r\n", 150) + "MAIL FROM:<a@test>\r\n")
	for range 150 {
		c.ExpectReply("250 2.0.0 Ok")
	}
	c.ExpectReply("250 2.1.0 Ok") // no HELO needed by default
}
