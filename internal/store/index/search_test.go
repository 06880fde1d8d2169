package index_test

import (
	"encoding/base64"
	"testing"

	"golang.org/x/text/encoding/japanese"

	"postoffice/internal/store"
)

// Search matches words by prefix over the decoded headers, text parts,
// HTML text and attachment names, in any charset, ignoring case and
// accents; never the raw transfer encoding.
func TestSearchDecodesAndFolds(t *testing.T) {
	m, x := newIndex(t)
	sjisSubject, _ := japanese.ShiftJIS.NewEncoder().String("会議の議事録")
	sjisBody, _ := japanese.ShiftJIS.NewEncoder().String("東京で会いましょう")
	utf8Body := "Crème brûlée à la française, señor Müller"
	b64 := base64.StdEncoding.EncodeToString([]byte(utf8Body))
	msgs := map[string]string{
		"latin1-qp": "From: =?ISO-8859-1?Q?J=FCrgen?= <j@example.de>\r\nSubject: Gruss\r\n" +
			"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"Gr=FC=DFe aus M=FCnchen\r\n",
		"sjis": "Subject: =?Shift_JIS?B?" + base64.StdEncoding.EncodeToString([]byte(sjisSubject)) + "?=\r\n" +
			"Content-Type: text/plain; charset=Shift_JIS\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + sjisBody + "\r\n",
		"utf8-b64": "Subject: dessert\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n",
		"html-only": "Subject: newsletter\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
			"<html><head><style>.zebra{}</style></head><body><div><p>Quarterly <b>earnings</b></p></div></body></html>\r\n",
		"attachment": "Subject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
			"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice-2024.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKNSAwIG9iago=\r\n--b--\r\n",
	}
	ids := map[string]string{}
	for name, raw := range msgs {
		ids[name] = deliverTest(t, m, "u", raw)
	}
	cases := []struct {
		q    string
		want []string
	}{
		{"munchen", []string{"latin1-qp"}},
		{"grüße", []string{"latin1-qp"}},
		{"from:jurgen", []string{"latin1-qp"}},
		{"会議", []string{"sjis"}},
		{"subject:会議の議事録", []string{"sjis"}},
		{"東京で会いましょう", []string{"sjis"}},
		{"creme brulee", []string{"utf8-b64"}},
		{"MULLER", []string{"utf8-b64"}},
		{"fran", []string{"utf8-b64"}}, // prefix
		{b64[:12], nil},                // the base64 text itself is not indexed
		{"earnings", []string{"html-only"}},
		{"text:quarterly", []string{"html-only"}},
		{"zebra", nil}, // CSS
		{"div", nil},   // markup
		{"invoice", []string{"attachment"}},
		{"text:invoice-2024", []string{"attachment"}},
		{"has:attachment", []string{"attachment"}},
		{"JVBERi0xLjQK", nil},
	}
	for _, c := range cases {
		q, err := store.ParseQuery(c.q)
		if err != nil {
			t.Fatal(c.q, err)
		}
		res, err := x.List("u", q, 0, 100)
		if err != nil {
			t.Fatal(c.q, err)
		}
		got := map[string]bool{}
		for _, s := range res.Messages {
			got[s.ID] = true
		}
		if res.Total != len(c.want) || len(got) != len(c.want) {
			t.Errorf("%q: %d matches %v, want %v", c.q, res.Total, res.Messages, c.want)
			continue
		}
		for _, w := range c.want {
			if !got[ids[w]] {
				t.Errorf("%q: %s not found", c.q, w)
			}
		}
	}
}
