package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/config"
)

// TestPOP3RetrMarksSeen: a complete RETR renames the message to
// cur/<id>.eml:2,S (as Dovecot's POP3 marks retrieved mail seen); TOP
// leaves it in new/; UIDL and LIST do not change, and DELE + QUIT remove
// the renamed file.
func TestPOP3RetrMarksSeen(t *testing.T) {
	var dir string
	s := opsServer(t, func(c *config.Config) { dir = c.MailboxDir })
	send(t, s, "one")
	box := filepath.Join(dir, "user")
	files := func(sub string) []string {
		es, _ := os.ReadDir(filepath.Join(box, sub))
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	news := files("new")
	if len(news) != 1 {
		t.Fatalf("new/ holds %v", news)
	}
	id := strings.TrimSuffix(news[0], ".eml")

	p := pop3Dial(t, s)
	p.Cmd("USER user", "+OK*")
	p.Cmd("PASS pass", "+OK*")
	list := p.Cmd("LIST 1", "+OK 1 *").Last()
	p.Cmd("UIDL 1", "+OK 1 "+id)
	p.Cmd("TOP 1 0", "+OK*")
	p.Multiline()
	if got := files("new"); len(got) != 1 || len(files("cur")) != 0 {
		t.Fatalf("after TOP: new/ %v cur/ %v", got, files("cur"))
	}
	p.Cmd("RETR 1", "+OK*")
	p.Multiline()
	p.Cmd("NOOP", "+OK*") // the mark is made before the next command is read
	if got := files("cur"); len(got) != 1 || got[0] != id+".eml:2,S" || len(files("new")) != 0 {
		t.Fatalf("after RETR: new/ %v cur/ %v", files("new"), got)
	}
	p.Cmd("LIST 1", list)
	p.Cmd("UIDL 1", "+OK 1 "+id)
	p.Cmd("RETR 1", "+OK*") // still readable under its new name
	p.Multiline()
	p.Cmd("DELE 1", "+OK*")
	p.Cmd("QUIT", "+OK*")
	if got := files("cur"); len(got) != 0 {
		t.Fatalf("after QUIT: cur/ %v", got)
	}
}
