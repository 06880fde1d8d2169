package shared

import (
	"strconv"
	"strings"

	"postoffice/internal/store"
)

// queryWhere returns the SQL condition (on messages m, $1 the folder id)
// and its arguments for q: what the Maildir's index matches, the same way.
// Text conditions use PostgreSQL's full-text search on m.fts: each term
// is folded as the stored text was (Fold) and becomes a phrase of its
// words whose last word is a prefix ("weekly rep" matches "weekly
// report"), restricted to the weight of its field (A from, B to and cc,
// C subject, D body text; Words any of them). A term without a letter or
// digit constrains nothing. User text reaches PostgreSQL only as bind
// parameters, and tsquery lexemes are quoted.
func queryWhere(q store.Query, fid int64) (string, []any) {
	conds := []string{"m.folder_id = $1"}
	args := []any{fid}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if tq := tsQuery(q); tq != "" {
		conds = append(conds, "m.fts @@ to_tsquery('simple', "+arg(tq)+")")
	}
	if !q.After.IsZero() {
		conds = append(conds, "m.received >= "+arg(q.After))
	}
	if !q.Before.IsZero() {
		conds = append(conds, "m.received < "+arg(q.Before))
	}
	if q.Larger > 0 {
		conds = append(conds, "m.size > "+arg(q.Larger))
	}
	if q.Smaller > 0 {
		conds = append(conds, "m.size < "+arg(q.Smaller))
	}
	if q.Seen != nil {
		c := `m.flags @> ARRAY['\Seen']`
		if !*q.Seen {
			c = "NOT " + c
		}
		conds = append(conds, c)
	}
	if q.Attachments != nil {
		conds = append(conds, "m.attachments = "+arg(*q.Attachments))
	}
	if len(q.Tags) > 0 {
		conds = append(conds, "m.tags @> "+arg(q.Tags)+"::text[]")
	}
	return strings.Join(conds, " AND "), args
}

// tsQuery returns the tsquery text of q's text conditions, every term
// ANDed, or "" when there is none.
func tsQuery(q store.Query) string {
	var parts []string
	add := func(weight string, terms []string) {
		for _, t := range terms {
			if p := tsPhrase(t, weight); p != "" {
				parts = append(parts, p)
			}
		}
	}
	add("", q.Words)
	add("A", q.From)
	add("B", q.To)
	add("C", q.Subject)
	add("D", q.Text)
	return strings.Join(parts, " & ")
}

// tsPhrase is one term as a tsquery phrase: 'w1':W <-> 'w2':*W.
func tsPhrase(term, weight string) string {
	words := strings.Fields(Fold(term))
	if len(words) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('(')
	for i, w := range words {
		if i > 0 {
			b.WriteString(" <-> ")
		}
		// Fold leaves letters and digits only; quoting still guards the
		// tsquery syntax.
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(w, `\`, `\\`), `'`, `''`))
		b.WriteByte('\'')
		if i == len(words)-1 || weight != "" {
			b.WriteByte(':')
			if i == len(words)-1 {
				b.WriteByte('*')
			}
			b.WriteString(weight)
		}
	}
	b.WriteByte(')')
	return b.String()
}
