package chaos

import (
	"context"
	"encoding/json"
	"testing"

	"postoffice/internal/smtp"
)

// FuzzParseJSON: any body either is refused with an error or gives a rule
// set whose every injected reply is a valid failure reply, which survives
// a round trip through its JSON view (what GET shows, PUT takes back).
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{"rules":[{"stage":"rcpt","match":"*@bounce.test","action":"reply","code":550,"enhanced":"5.1.1","text":"x"}]}`,
		`{"seed":3,"rules":[{"stage":"connect","action":"reply","code":554}],"rate":{"per_second":2}}`,
		`{"rules":[{"stage":"message","action":"delay","delay":"1ms","probability":0.5}]}`,
		`{"rules":[{"stage":"mail","action":"drop","match":"a?b*"}]}`,
		`{"rules":[{"stage":"ehlo","action":"reply","code":421,"enhanced":"4.7.0"}]}`,
		`{}`, `[]`, `{"rules":null}`, `{"rules":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseJSON(data)
		if err != nil {
			return
		}
		for _, r := range c.Rules {
			if r.Action != ActionReply {
				continue
			}
			if r.err == nil || r.err.Code < 400 || r.err.Code > 599 {
				t.Fatalf("rule %+v: reply %v", r, r.err)
			}
			if r.stage == smtp.StageConnect && r.err.Code != 421 && r.err.Code != 554 {
				t.Fatalf("connect reply %d", r.err.Code)
			}
			for i := 0; i < len(r.err.Message); i++ {
				if b := r.err.Message[i]; b < 0x20 || b > 0x7e {
					t.Fatalf("reply text %q", r.err.Message)
				}
			}
		}
		e := &Engine{}
		e.Set(c, "api")
		view, err := json.Marshal(e.View())
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Seed  int64  `json:"seed"`
			Rules []Rule `json:"rules"`
			Rate  *Rate  `json:"rate"`
		}
		if err := json.Unmarshal(view, &back); err != nil {
			t.Fatal(err)
		}
		again, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseJSON(again); err != nil {
			t.Fatalf("view %s does not parse back: %v", again, err)
		}
		// Checks at every stage answer without a panic (no delay rules can
		// wait long here: at most MaxDelay, so skip those).
		for _, r := range c.Rules {
			if r.Action == ActionDelay {
				return
			}
		}
		for _, st := range []smtp.Stage{smtp.StageConnect, smtp.StageHelo, smtp.StageMail, smtp.StageRcpt, smtp.StageData, smtp.StageMessage} {
			e.Check(context.Background(), smtp.PolicyQuery{Stage: st, Arg: "a@b", Env: &smtp.Envelope{From: "x@y", To: []string{"a@b"}}})
		}
	})
}
