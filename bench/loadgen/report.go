package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Record is one line of the results file bench/run.sh writes: a Result
// tagged with the server and case it measured, or a metric (mode "metric",
// Value) such as peak RSS or CPU seconds.
type Record struct {
	Result
	Server string  `json:"server"`
	Case   string  `json:"case"`
	Value  float64 `json:"value,omitempty"`
}

// freePorts prints n free loopback TCP ports, one per line. They are free
// when probed; run.sh starts its servers right after.
func freePorts(n int) error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// median returns the median of v (the mean of the middle two for even
// counts), or NaN-free 0 for no values.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report reads the records of path and writes the markdown tables of
// medians and the ratios of Postoffice against the targets.
func report(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type key = rkey
	rate := map[key][]float64{}   // msgs/s
	p50 := map[key][]float64{}    // ms
	p99 := map[key][]float64{}    // ms
	maxLat := map[key][]float64{} // ms
	errs := map[key]int64{}
	capped := map[key]bool{}
	metric := map[key]float64{}
	var servers []string
	classic := false // any SMTP or POP3 case
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("%s: %w", line, err)
		}
		if !slices.Contains(servers, r.Server) {
			servers = append(servers, r.Server)
		}
		k := key{r.Server, r.Case}
		if !strings.HasPrefix(r.Case, "imap-") {
			classic = true
		}
		if r.Mode == "metric" {
			metric[k] = r.Value
			continue
		}
		if strings.HasPrefix(r.Case, "imap-") && r.Messages == 0 && r.Errors > 0 {
			errs[k] += r.Errors // a failed IMAP run has no time or rate to count
			continue
		}
		rate[k] = append(rate[k], r.MsgsPerSec)
		p50[k] = append(p50[k], r.P50ms)
		p99[k] = append(p99[k], r.P99ms)
		maxLat[k] = append(maxLat[k], r.MaxMs)
		if strings.Contains(r.FirstError, "duration cap") {
			capped[k] = true // the run hit -duration: its rate is of what completed
		} else {
			errs[k] += r.Errors
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	st := &runStats{servers: servers, rate: rate, p50: p50, p99: p99, maxLat: maxLat, errs: errs, capped: capped, metric: metric}
	if !classic {
		return reportIMAP(w, st)
	}
	cell := func(k key) string {
		v, ok := rate[k]
		if !ok {
			return "–"
		}
		s := commas(median(v))
		if errs[k] > 0 {
			s += fmt.Sprintf(" (%d err)", errs[k])
		}
		if capped[k] {
			s += " (capped)"
		}
		return s
	}
	mcell := func(k key, unit string, prec int) string {
		v, ok := metric[k]
		if !ok {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', prec, 64) + unit
	}
	fmt.Fprintln(w, "SMTP, messages per second acknowledged with 250 (median of runs):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | 2 KB, 1 conn | 2 KB, 8 conns | 2 KB, 64 conns | 1 MB, 8 conns | peak RSS after 2 KB | peak RSS after 1 MB | CPU s / 1,000 2 KB msgs | disk writes / flushes per 2 KB msg |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range servers {
		if _, ok := rate[key{s, "smtp-2k-1"}]; !ok {
			continue
		}
		io := "–"
		if _, ok := metric[key{s, "dev-writes-per-msg"}]; ok {
			io = mcell(key{s, "dev-writes-per-msg"}, "", 1) + " / " + mcell(key{s, "dev-flushes-per-msg"}, "", 1)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s,
			cell(key{s, "smtp-2k-1"}), cell(key{s, "smtp-2k-8"}), cell(key{s, "smtp-2k-64"}), cell(key{s, "smtp-1m-8"}),
			mcell(key{s, "rss-2k"}, " MB", 0), mcell(key{s, "rss-1m"}, " MB", 0), mcell(key{s, "cpu-per-1000"}, "", 3), io)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "POP3 (median of runs; login+STAT in milliseconds, median / slowest):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | RETR 5,000 × 2 KB, msg/s | RETR+DELE 5,000, msg/s | login+STAT 1,000 | login+STAT 10,000 | login+STAT 100,000 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	lat := func(k key) string {
		v, ok := p50[k]
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f / %.1f ms", median(v), slices.Max(maxLat[k]))
	}
	for _, s := range servers {
		if _, ok := rate[key{s, "pop3-retr"}]; !ok {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", s,
			cell(key{s, "pop3-retr"}), cell(key{s, "pop3-retr-dele"}),
			lat(key{s, "pop3-stat-1000"}), lat(key{s, "pop3-stat-10000"}), lat(key{s, "pop3-stat-100000"}))
	}

	// Ratios of Postoffice to the peers, against the targets.
	const po = "postoffice"
	type target struct {
		cs, peer string
		min      float64
	}
	targets := []target{
		{"smtp-2k-8", "mailpit", 2}, {"smtp-2k-8", "aiosmtpd-nofsync", 1.5},
		{"smtp-2k-64", "mailpit", 2}, {"smtp-2k-64", "aiosmtpd-nofsync", 1.5},
		{"smtp-2k-1", "mailpit", 1.25}, {"smtp-2k-1", "aiosmtpd-fsync", 1.4},
		{"smtp-1m-8", "smtp-sink", 0.9},
		{"pop3-retr", "dovecot", 1.2}, {"pop3-retr-dele", "dovecot", 1},
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets (ratio of Postoffice's median to the peer's, same run):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | peer | target | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, t := range targets {
		a, b := rate[key{po, t.cs}], rate[key{t.peer, t.cs}]
		if len(a) == 0 || len(b) == 0 || median(b) == 0 {
			fmt.Fprintf(w, "| %s | %s | ≥ %.2f× | – | not measured |\n", t.cs, t.peer, t.min)
			continue
		}
		r := median(a) / median(b)
		verdict := "met"
		if r < t.min {
			verdict = fmt.Sprintf("NOT met (%.0f%% short)", (1-r/t.min)*100)
		}
		fmt.Fprintf(w, "| %s | %s | ≥ %.2f× | %.2f× | %s |\n", t.cs, t.peer, t.min, r, verdict)
	}
	// Not a target: how Postoffice, protocol included, compares with the
	// disk's rate for one fsync'd file per message and no protocol.
	for _, cs := range []string{"smtp-2k-1", "smtp-2k-8", "smtp-2k-64"} {
		a, b := rate[key{po, cs}], rate[key{"fsync-files", cs}]
		if len(a) == 0 || len(b) == 0 || median(b) == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | fsync-files (no protocol) | (none) | %.2f× | for reference |\n", cs, median(a)/median(b))
	}
	if a, ok := metric[key{po, "rss-1m"}]; ok {
		b := metric[key{po, "rss-2k"}]
		verdict := "met"
		if a > 2*b {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "| peak RSS 1 MB vs 2 KB | postoffice | ≤ 2× | %.2f× | %s |\n", a/b, verdict)
	}
	if a, ok := metric[key{po, "cpu-per-1000"}]; ok {
		b, okb := metric[key{"mailpit", "cpu-per-1000"}]
		switch {
		case !okb:
			fmt.Fprintf(w, "| CPU s / 1,000 msgs | mailpit | ≤ mailpit | %.3f s | mailpit not measured |\n", a)
		case a <= b:
			fmt.Fprintf(w, "| CPU s / 1,000 msgs | mailpit | ≤ %.3f s | %.3f s | met |\n", b, a)
		default:
			fmt.Fprintf(w, "| CPU s / 1,000 msgs | mailpit | ≤ %.3f s | %.3f s | NOT met |\n", b, a)
		}
	}
	return reportIMAP(w, st)
}

// commas formats v rounded to an integer with thousands separators (or
// with one decimal below 100).
func commas(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rkey names one server's case in a results file.
type rkey struct{ server, cs string }

// runStats are a results file's measurements by server and case: every
// run's rate (msgs/s), latency percentiles (ms), errors and metrics.
type runStats struct {
	servers                []string
	rate, p50, p99, maxLat map[rkey][]float64
	errs                   map[rkey]int64
	capped                 map[rkey]bool
	metric                 map[rkey]float64
}

// caseSizes returns the sorted distinct N of the cases named
// prefix + N + suffix.
func (st *runStats) caseSizes(prefix, suffix string) []int {
	var ns []int
	for k := range st.p50 {
		rest, ok := strings.CutPrefix(k.cs, prefix)
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(rest, suffix)
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// flags returns " (n err)" and " (capped)" for k, or "".
func (st *runStats) flags(k rkey) string {
	s := ""
	if st.errs[k] > 0 {
		s += fmt.Sprintf(" (%d err)", st.errs[k])
	}
	if st.capped[k] {
		s += " (capped)"
	}
	return s
}

// reportIMAP writes the IMAP tables (issue 15) and their targets, when
// the results have IMAP cases: imap-fetch-N-cold and -warm (one session's
// wall time, p50_ms), imap-body-N (msgs/s), imap-idle (latency) and
// imap-idle-N (N sessions; metrics imap-idle-procs, -hwm, -pss, and
// imap-base-rss before the sessions).
func reportIMAP(w io.Writer, st *runStats) error {
	fetches := st.caseSizes("imap-fetch-", "-cold")
	bodies := st.caseSizes("imap-body-", "")
	many := st.caseSizes("imap-idle-", "")
	if len(fetches) == 0 && len(bodies) == 0 && len(many) == 0 {
		if _, ok := st.p50[rkey{"postoffice", "imap-idle"}]; !ok {
			return nil
		}
	}
	seconds := func(k rkey) string { // median wall time of one session
		v, ok := st.p50[k]
		if !ok {
			return "–" + st.flags(k)
		}
		if m := median(v); m < 1000 {
			return fmt.Sprintf("%.0f ms", m) + st.flags(k)
		}
		return fmt.Sprintf("%.2f s", median(v)/1000) + st.flags(k)
	}
	var imapServers []string
	for _, s := range st.servers {
		for _, k := range slices.Concat(slices.Collect(maps.Keys(st.p50)), slices.Collect(maps.Keys(st.errs))) {
			if k.server == s && strings.HasPrefix(k.cs, "imap-") {
				imapServers = append(imapServers, s)
				break
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "IMAP: LOGIN, SELECT INBOX and FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) of 2 KB messages, wall time from connect to the FETCH's OK (median of runs; first session of a fresh server process on a fresh maildir, then a second session):")
	fmt.Fprintln(w)
	head, rule := "| server |", "|---|"
	for _, n := range fetches {
		head += fmt.Sprintf(" %s msgs, first | %s msgs, second |", commas(float64(n)), commas(float64(n)))
		rule += "---|---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, s := range imapServers {
		row := "| " + s + " |"
		for _, n := range fetches {
			row += " " + seconds(rkey{s, fmt.Sprintf("imap-fetch-%d-cold", n)}) + " | " +
				seconds(rkey{s, fmt.Sprintf("imap-fetch-%d-warm", n)}) + " |"
		}
		fmt.Fprintln(w, row)
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "IMAP: UID FETCH 1:* BODY.PEEK[] (msg/s over the command), SMTP 250 to the IDLE session's EXISTS (ms, median of the runs' p50 / p99), and N sessions in IDLE on one mailbox (the server's processes meanwhile: count, sum of VmHWM, sum of Pss; its VmRSS before the sessions; the slowest session to see one delivery's EXISTS):")
	fmt.Fprintln(w)
	head, rule = "| server |", "|---|"
	for _, n := range bodies {
		head += fmt.Sprintf(" BODY.PEEK[] %s × 2 KB, msg/s |", commas(float64(n)))
		rule += "---|"
	}
	head += " 250 → EXISTS p50 / p99 |"
	rule += "---|"
	for _, n := range many {
		head += fmt.Sprintf(" %d IDLE: processes | VmHWM sum | Pss sum | RSS before | EXISTS in all |", n)
		rule += "---|---|---|---|---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	mcell := func(k rkey, unit string) string {
		v, ok := st.metric[k]
		if !ok {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', 0, 64) + unit
	}
	for _, s := range imapServers {
		row := "| " + s + " |"
		for _, n := range bodies {
			k := rkey{s, fmt.Sprintf("imap-body-%d", n)}
			if v, ok := st.rate[k]; ok {
				row += " " + commas(median(v)) + st.flags(k) + " |"
			} else {
				row += " –" + st.flags(k) + " |"
			}
		}
		k := rkey{s, "imap-idle"}
		if v, ok := st.p50[k]; ok {
			row += fmt.Sprintf(" %.1f / %.1f ms%s |", median(v), median(st.p99[k]), st.flags(k))
		} else {
			row += " –" + st.flags(k) + " |"
		}
		for _, n := range many {
			k := rkey{s, fmt.Sprintf("imap-idle-%d", n)}
			all := "–" + st.flags(k)
			if v, ok := st.maxLat[k]; ok {
				all = fmt.Sprintf("%.0f ms%s", slices.Max(v), st.flags(k))
			}
			row += " " + mcell(rkey{s, "imap-idle-procs"}, "") + " | " + mcell(rkey{s, "imap-idle-hwm"}, " MB") + " | " +
				mcell(rkey{s, "imap-idle-pss"}, " MB") + " | " + mcell(rkey{s, "imap-base-rss"}, " MB") + " | " + all + " |"
		}
		fmt.Fprintln(w, row)
	}

	// The targets: Postoffice against Dovecot in the same run.
	const po, dc = "postoffice", "dovecot"
	fmt.Fprintln(w)
	fmt.Fprintln(w, "IMAP targets (issue 15; Postoffice against Dovecot in the same run):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | target | postoffice | dovecot | ratio | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	timeTarget := func(cs, what string, maxRatio float64) {
		a, b := st.p50[rkey{po, cs}], st.p50[rkey{dc, cs}]
		if len(a) == 0 || len(b) == 0 {
			fmt.Fprintf(w, "| %s | ≤ %.0f× Dovecot's time | %s | %s | – | not measured |\n", what, maxRatio, seconds(rkey{po, cs}), seconds(rkey{dc, cs}))
			return
		}
		r := median(a) / median(b)
		verdict := "met"
		if r > maxRatio {
			verdict = fmt.Sprintf("NOT met (%.0f%% over)", (r/maxRatio-1)*100)
		}
		fmt.Fprintf(w, "| %s | ≤ %.0f× Dovecot's time | %s | %s | %.2f× | %s |\n", what, maxRatio, seconds(rkey{po, cs}), seconds(rkey{dc, cs}), r, verdict)
	}
	for _, n := range fetches {
		timeTarget(fmt.Sprintf("imap-fetch-%d-warm", n), fmt.Sprintf("SELECT+FETCH %s, second session", commas(float64(n))), 1)
		timeTarget(fmt.Sprintf("imap-fetch-%d-cold", n), fmt.Sprintf("SELECT+FETCH %s, first session", commas(float64(n))), 2)
	}
	for _, n := range bodies {
		cs := fmt.Sprintf("imap-body-%d", n)
		a, b := st.rate[rkey{po, cs}], st.rate[rkey{dc, cs}]
		if len(a) == 0 || len(b) == 0 || median(b) == 0 {
			cellOf := func(v []float64) string {
				if len(v) == 0 {
					return "–"
				}
				return commas(median(v))
			}
			fmt.Fprintf(w, "| BODY.PEEK[] %s | ≥ Dovecot's msg/s | %s | %s | – | not measured |\n", commas(float64(n)), cellOf(a), cellOf(b))
			continue
		}
		r := median(a) / median(b)
		verdict := "met"
		if r < 1 {
			verdict = fmt.Sprintf("NOT met (%.0f%% short)", (1-r)*100)
		}
		fmt.Fprintf(w, "| BODY.PEEK[] %s | ≥ Dovecot's msg/s | %s | %s | %.2f× | %s |\n", commas(float64(n)), commas(median(a)), commas(median(b)), r, verdict)
	}
	if v, ok := st.p99[rkey{po, "imap-idle"}]; ok {
		dcs := "–"
		if d, ok := st.p99[rkey{dc, "imap-idle"}]; ok {
			dcs = fmt.Sprintf("%.1f ms", median(d))
		}
		verdict := "met"
		if p := median(v); p >= 50 {
			verdict = fmt.Sprintf("NOT met (%.0f%% over)", (p/50-1)*100)
		}
		fmt.Fprintf(w, "| 250 → IDLE EXISTS, p99 | < 50 ms | %.1f ms | %s | (absolute) | %s |\n", median(v), dcs, verdict)
	} else {
		fmt.Fprintln(w, "| 250 → IDLE EXISTS, p99 | < 50 ms | – | – | – | not measured |")
	}
	return nil
}
