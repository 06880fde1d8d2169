package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// apiMessage is what the wait, latest and message endpoints answer (the
// fields these tests look at).
type apiMessage struct {
	ID       string `json:"id"`
	Subject  string `json:"subject"`
	Envelope struct {
		Recipients []string `json:"recipients"`
	} `json:"envelope"`
}

// apiWait sends GET /api/v1/mailboxes/{mailbox}/messages/wait with
// params and returns the status and the message.
func apiWait(t *testing.T, c *webClient, mailbox string, params url.Values) (int, apiMessage) {
	t.Helper()
	var m apiMessage
	resp, err := c.hc.Get(c.base + "/api/v1/mailboxes/" + mailbox + "/messages/wait?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("wait: %v in %s", err, b)
		}
	}
	return resp.StatusCode, m
}

// apiListIDs returns the ids of the messages of mailbox matching q.
func apiListIDs(t *testing.T, c *webClient, mailbox, q string) (int, []string) {
	t.Helper()
	var l struct {
		Messages []apiMessage `json:"messages"`
	}
	code := c.do("GET", "/api/v1/mailboxes/"+mailbox+"/messages?per_page=500&q="+url.QueryEscape(q), "", &l)
	var ids []string
	for _, m := range l.Messages {
		ids = append(ids, m.ID)
	}
	return code, ids
}
