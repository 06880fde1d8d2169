package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"postoffice/internal/smtp"
)

// recordingStore is a store.Deliverer that keeps what it is given.
type recordingStore struct {
	n     int
	boxes []string
	data  []byte
}

func (s *recordingStore) NewID() string { s.n++; return "ID" + string(rune('0'+s.n)) }
func (s *recordingStore) Deliver(_ context.Context, _ string, boxes []string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.boxes, s.data = boxes, data
	return nil
}

// TestSubmitSharesTheDeliveryPath: Submit routes like RCPT (the first
// refused recipient named, nothing stored), checks free space like MAIL,
// and writes the trace of Data with its own protocol; Data's trace stays
// what it was.
func TestSubmitSharesTheDeliveryPath(t *testing.T) {
	st := &recordingStore{}
	b := &SMTP{Store: st, Router: &Router{Users: func() Directory { return dir{"alice": "alice", "bob": "bob"} }},
		Hostname: "mx.test", Now: func() time.Time { return time.Unix(0, 0).UTC() }}
	env := &smtp.Envelope{Conn: smtp.ConnInfo{ID: "C1", RemoteIP: netip.MustParseAddr("127.0.0.1")}, From: "a@example.org",
		To: []string{"alice@example.org", "nobody@example.org", "bob@example.org"}}
	_, err := b.Submit(context.Background(), env, "HTTP", strings.NewReader("Subject: x\r\n\r\nb\r\n"))
	var re *RecipientError
	var se *smtp.Error
	if !errors.As(err, &re) || re.Recipient != "nobody@example.org" || !errors.As(err, &se) || se.Code != 550 || se.Enhanced != "5.1.1" || st.data != nil {
		t.Fatalf("Submit with an unknown recipient: %v (stored %q)", err, st.data)
	}

	env.To = []string{"alice@example.org", "ALICE@example.org", "bob@example.org"}
	d, err := b.Submit(context.Background(), env, "HTTP", strings.NewReader("Subject: x\r\n\r\nb\r\n"))
	if err != nil || d.ID != "ID1" || strings.Join(d.Mailboxes, ",") != "alice,bob" || strings.Join(st.boxes, ",") != "alice,bob" {
		t.Fatalf("Submit = %+v, %v (store got %v)", d, err, st.boxes)
	}
	want := "Return-Path: <a@example.org>\r\nReceived: from [127.0.0.1] ([127.0.0.1])\r\n\tby mx.test (Postoffice) with HTTP id ID1; Thu, 01 Jan 1970 00:00:00 +0000\r\nSubject: x\r\n"
	if !bytes.HasPrefix(st.data, []byte(want)) {
		t.Errorf("stored %q, want it to begin %q", st.data, want)
	}

	// Data: the same path, SMTP's trace; a recipient that no longer
	// routes is a temporary 451 for the whole message.
	env.Helo, env.ESMTP, env.To = "client.test", true, []string{"bob@example.org"}
	if id, err := b.Data(context.Background(), env, strings.NewReader("x\r\n")); err != nil || id != "ID2" {
		t.Fatalf("Data = %q, %v", id, err)
	}
	if !bytes.HasPrefix(st.data, []byte("Return-Path: <a@example.org>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test (Postoffice) with ESMTP id ID2\r\n\tfor <bob@example.org>;")) {
		t.Errorf("Data stored %q", st.data)
	}
	env.To = []string{"gone@example.org"}
	if _, err := b.Data(context.Background(), env, strings.NewReader("x\r\n")); !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("Data to a recipient gone: %v", err)
	}

	// Below the free-space floor Submit refuses as MAIL does.
	b.FreeSpace = func() error { return errors.New("full") }
	if _, err := b.Submit(context.Background(), env, "HTTP", strings.NewReader("x")); !errors.As(err, &se) || se.Code != 452 || se.Enhanced != "4.3.1" {
		t.Errorf("Submit below the floor: %v", err)
	}
}
