// Package metrics holds Postoffice's Prometheus metrics: one registry per
// server with the Go runtime and process collectors, counters fed by the
// protocol engines (through their Observer interfaces), the store and the
// server, and mailbox gauges kept in memory (no directory walk per scrape).
//
// Every metric is named postoffice_*; docs/operations.md lists them.
package metrics

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of metrics of one server. Its methods are safe for
// concurrent use. A nil *Metrics records nothing, so code paths need not
// check.
type Metrics struct {
	reg *prometheus.Registry

	connsCurrent  *prometheus.GaugeVec
	connsTotal    *prometheus.CounterVec
	connsRejected *prometheus.CounterVec
	bytesReceived *prometheus.CounterVec

	smtpTransactions *prometheus.CounterVec
	smtpMessages     *prometheus.CounterVec
	smtpMessageBytes prometheus.Counter
	deliveryLatency  prometheus.Histogram

	pop3Logins         *prometheus.CounterVec
	pop3Retrieved      prometheus.Counter
	pop3RetrievedBytes prometheus.Counter
	pop3Deleted        prometheus.Counter

	imapLogins   *prometheus.CounterVec
	imapSessions prometheus.Gauge
	imapCommands *prometheus.CounterVec
	imapIdle     prometheus.Gauge

	authFailures  *prometheus.CounterVec
	authPenalties prometheus.Counter
	authPenaltyS  prometheus.Counter
	authBlocks    prometheus.Counter

	fsyncLatency prometheus.Histogram
	storeErrors  *prometheus.CounterVec
	// The shared store's calls to PostgreSQL and S3.
	engineLatency *prometheus.HistogramVec
	engineErrors  *prometheus.CounterVec

	retentionPasses  prometheus.Counter
	retentionRemoved prometheus.Counter
	retentionBytes   prometheus.Counter
	retentionSkipped *prometheus.CounterVec

	// Mailboxes holds the mailbox gauges.
	Mailboxes *Mailboxes
}

// latencyBuckets covers an fsync on fast NVMe (~50µs) to a slow disk
// under load (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New returns the metrics, registered in a fresh registry together with the
// Go runtime and process collectors and a build info gauge.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), Mailboxes: newMailboxes()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(buildInfo())
	f(m.Mailboxes)

	m.connsCurrent = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postoffice_connections_current", Help: "Open client connections."}, []string{"proto"})
	m.connsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_connections_total", Help: "Client connections accepted."}, []string{"proto"})
	m.connsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_connections_rejected_total", Help: "Client connections refused before a session started, by reason (limit, blocked, shutdown)."}, []string{"proto", "reason"})
	m.bytesReceived = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_received_bytes_total", Help: "Octets read from client connections (TLS records included)."}, []string{"proto"})
	m.smtpTransactions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_smtp_transactions_total", Help: "SMTP MAIL commands by reply code class (2xx: a transaction started)."}, []string{"class"})
	m.smtpMessages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_smtp_messages_total", Help: "SMTP messages (end of DATA or BDAT LAST) by reply code class (2xx: accepted)."}, []string{"class"})
	m.smtpMessageBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_smtp_message_bytes_total", Help: "Octets of message data received over SMTP."})
	m.deliveryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postoffice_delivery_duration_seconds", Help: "Time from the end of the message data to its durable storage (the 250 reply).", Buckets: latencyBuckets})
	m.pop3Logins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_pop3_logins_total", Help: "POP3 logins by result (ok, failed, in_use, blocked, error)."}, []string{"result"})
	m.pop3Retrieved = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_pop3_retrieved_total", Help: "Messages sent whole by POP3 RETR."})
	m.pop3RetrievedBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_pop3_retrieved_bytes_total", Help: "Octets of messages sent by POP3 RETR."})
	m.pop3Deleted = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_pop3_deleted_total", Help: "Messages removed by POP3 QUIT."})
	m.imapLogins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_imap_logins_total", Help: "IMAP logins (LOGIN and AUTHENTICATE) by result (ok, failed, blocked, error)."}, []string{"result"})
	m.imapSessions = prometheus.NewGauge(prometheus.GaugeOpts{Name: "postoffice_imap_sessions", Help: "IMAP sessions open."})
	m.imapCommands = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_imap_commands_total", Help: "IMAP tagged commands by name and result (ok, no, bad)."}, []string{"command", "result"})
	m.imapIdle = prometheus.NewGauge(prometheus.GaugeOpts{Name: "postoffice_imap_idle_sessions", Help: "IMAP sessions in IDLE."})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_auth_failures_total", Help: "Failed logins (wrong credentials) by protocol."}, []string{"proto"})
	m.authPenalties = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_auth_penalties_total", Help: "Failed logins answered after a penalty delay."})
	m.authPenaltyS = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_auth_penalty_seconds_total", Help: "Sum of the penalty delays imposed on failed logins."})
	m.authBlocks = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_auth_blocks_total", Help: "Clients that reached --auth-max-failures and were blocked for the window."})
	m.fsyncLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postoffice_store_fsync_duration_seconds", Help: "Duration of directory fsyncs in the mailbox store.", Buckets: latencyBuckets})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_store_errors_total", Help: "Failed store operations by operation (deliver, open, commit, fsync, prune)."}, []string{"op"})
	m.retentionPasses = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_retention_passes_total", Help: "Retention passes run."})
	m.retentionRemoved = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_retention_removed_total", Help: "Messages removed by retention."})
	m.retentionBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_retention_removed_bytes_total", Help: "Octets of messages removed by retention."})
	m.retentionSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_retention_skipped_total", Help: "Mailboxes retention skipped, by reason (locked: a POP3 session holds it; error)."}, []string{"reason"})
	m.engineLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postoffice_store_request_duration_seconds", Help: "Duration of the shared store's calls to PostgreSQL (engine pg) and S3 (engine s3), by operation.", Buckets: latencyBuckets}, []string{"engine", "op"})
	m.engineErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_store_request_errors_total", Help: "Failed calls of the shared store to PostgreSQL (pg) and S3 (s3), by operation."}, []string{"engine", "op"})
	for _, c := range []prometheus.Collector{
		m.engineLatency, m.engineErrors,
		m.connsCurrent, m.connsTotal, m.connsRejected, m.bytesReceived,
		m.smtpTransactions, m.smtpMessages, m.smtpMessageBytes, m.deliveryLatency,
		m.pop3Logins, m.pop3Retrieved, m.pop3RetrievedBytes, m.pop3Deleted,
		m.imapLogins, m.imapSessions, m.imapCommands, m.imapIdle,
		m.authFailures, m.authPenalties, m.authPenaltyS, m.authBlocks,
		m.fsyncLatency, m.storeErrors,
		m.retentionPasses, m.retentionRemoved, m.retentionBytes, m.retentionSkipped,
	} {
		f(c)
	}
	// Series that exist from the start, so that rate() and absent() work
	// before the first event.
	for _, p := range []string{"smtp", "smtps", "pop3", "pop3s", "imap", "imaps"} {
		m.connsCurrent.WithLabelValues(p)
		m.connsTotal.WithLabelValues(p)
		m.bytesReceived.WithLabelValues(p)
	}
	for _, cl := range []string{"2xx", "4xx", "5xx"} {
		m.smtpTransactions.WithLabelValues(cl)
		m.smtpMessages.WithLabelValues(cl)
	}
	for _, r := range []string{"ok", "failed"} {
		m.pop3Logins.WithLabelValues(r)
		m.imapLogins.WithLabelValues(r)
	}
	for _, p := range []string{"smtp", "pop3", "imap"} {
		m.authFailures.WithLabelValues(p)
	}
	return m
}

// buildInfo is postoffice_build_info{version,goversion} 1.
func buildInfo() prometheus.Collector {
	version, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "postoffice_build_info",
		Help:        "Build information; the value is 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion},
	})
	g.Set(1)
	return g
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// class returns the reply code class label of an SMTP code: "2xx" etc.
func class(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// ConnOpened counts a connection accepted on a listener of proto.
func (m *Metrics) ConnOpened(proto string) {
	if m == nil {
		return
	}
	m.connsTotal.WithLabelValues(proto).Inc()
	m.connsCurrent.WithLabelValues(proto).Inc()
}

// ConnClosed counts the end of a connection ConnOpened counted.
func (m *Metrics) ConnClosed(proto string) {
	if m == nil {
		return
	}
	m.connsCurrent.WithLabelValues(proto).Dec()
}

// ConnRejected counts a connection refused before its session.
func (m *Metrics) ConnRejected(proto, reason string) {
	if m == nil {
		return
	}
	m.connsRejected.WithLabelValues(proto, reason).Inc()
}

// BytesReceived returns the counter of octets read on proto's connections.
func (m *Metrics) BytesReceived(proto string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.bytesReceived.WithLabelValues(proto)
}

// Delivered records a delivery that took d from the end of the data to
// durable storage.
func (m *Metrics) Delivered(d time.Duration) {
	if m == nil {
		return
	}
	m.deliveryLatency.Observe(d.Seconds())
}

// StoreRequest records one call of the shared store to an engine ("pg"
// or "s3").
func (m *Metrics) StoreRequest(engine, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.engineLatency.WithLabelValues(engine, op).Observe(d.Seconds())
	if err != nil {
		m.engineErrors.WithLabelValues(engine, op).Inc()
	}
}

// Fsync records a directory fsync of duration d.
func (m *Metrics) Fsync(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.fsyncLatency.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues("fsync").Inc()
	}
}

// StoreError counts a failed store operation op.
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// POP3Login counts a POP3 login by result: ok, failed, in_use, blocked,
// error.
func (m *Metrics) POP3Login(result string) {
	if m == nil {
		return
	}
	m.pop3Logins.WithLabelValues(result).Inc()
}

// IMAPLogin counts an IMAP login by result: ok, failed, blocked, error.
func (m *Metrics) IMAPLogin(result string) {
	if m == nil {
		return
	}
	m.imapLogins.WithLabelValues(result).Inc()
}

// POP3Deleted counts messages removed by a POP3 QUIT.
func (m *Metrics) POP3Deleted(n int) {
	if m == nil {
		return
	}
	m.pop3Deleted.Add(float64(n))
}

// AuthFailure counts a failed login over proto ("smtp" or "pop3") that was
// answered after penalty; blocked reports that this failure blocked the
// client.
func (m *Metrics) AuthFailure(proto string, penalty time.Duration, blocked bool) {
	if m == nil {
		return
	}
	m.authFailures.WithLabelValues(proto).Inc()
	if penalty > 0 {
		m.authPenalties.Inc()
		m.authPenaltyS.Add(penalty.Seconds())
	}
	if blocked {
		m.authBlocks.Inc()
	}
}

// RetentionPass counts one retention pass.
func (m *Metrics) RetentionPass() {
	if m == nil {
		return
	}
	m.retentionPasses.Inc()
}

// RetentionRemoved counts messages removed by retention.
func (m *Metrics) RetentionRemoved(n int, bytes int64) {
	if m == nil {
		return
	}
	m.retentionRemoved.Add(float64(n))
	m.retentionBytes.Add(float64(bytes))
}

// RetentionSkipped counts a mailbox retention could not prune (reason
// "locked" or "error").
func (m *Metrics) RetentionSkipped(reason string) {
	if m == nil {
		return
	}
	m.retentionSkipped.WithLabelValues(reason).Inc()
}

// Observer returns the engine Observer of the listeners of proto: it
// implements smtp.Observer and pop3.Observer (the method sets are
// structural, so this package imports neither engine).
func (m *Metrics) Observer(proto string) *Observer {
	return &Observer{m: m, proto: proto}
}

// Observer feeds one protocol's engine events into the metrics.
type Observer struct {
	m     *Metrics
	proto string
}

// ConnRejected implements smtp.Observer and pop3.Observer.
func (o *Observer) ConnRejected(reason string) { o.m.ConnRejected(o.proto, reason) }

// MailReply implements smtp.Observer.
func (o *Observer) MailReply(code int) {
	if o.m == nil {
		return
	}
	o.m.smtpTransactions.WithLabelValues(class(code)).Inc()
}

// MessageReply implements smtp.Observer.
func (o *Observer) MessageReply(code int, size int64) {
	if o.m == nil {
		return
	}
	o.m.smtpMessages.WithLabelValues(class(code)).Inc()
	o.m.smtpMessageBytes.Add(float64(size))
}

// Retrieved implements pop3.Observer.
func (o *Observer) Retrieved(size int64) {
	if o.m == nil {
		return
	}
	o.m.pop3Retrieved.Inc()
	o.m.pop3RetrievedBytes.Add(float64(size))
}

// Session implements imap.Observer.
func (o *Observer) Session(delta int) {
	if o.m == nil {
		return
	}
	o.m.imapSessions.Add(float64(delta))
}

// Command implements imap.Observer. Names are the engine's, a closed set,
// so the label's cardinality is bounded.
func (o *Observer) Command(name, result string) {
	if o.m == nil {
		return
	}
	o.m.imapCommands.WithLabelValues(name, result).Inc()
}

// Idle implements imap.Observer.
func (o *Observer) Idle(delta int) {
	if o.m == nil {
		return
	}
	o.m.imapIdle.Add(float64(delta))
}

// Mailboxes holds the message count and size of each mailbox in memory,
// kept current by the server from store events; a scrape reads the map.
// Until Ready is called (the first background scan is done) the gauges are
// reported but postoffice_mailbox_stats_ready is 0.
//
// The per-mailbox series (postoffice_mailbox_messages and
// postoffice_mailbox_bytes, labelled mailbox) name the users, so they are
// exported only after SetPerMailbox(true) (--metrics-mailbox-labels); the
// totals over every mailbox (postoffice_stored_messages,
// postoffice_stored_bytes) and the mailbox count always are.
type Mailboxes struct {
	mu         sync.Mutex
	boxes      map[string]*usage
	ready      bool
	perMailbox bool

	msgDesc, bytesDesc, countDesc, readyDesc *prometheus.Desc
	totalMsgDesc, totalBytesDesc             *prometheus.Desc
}

type usage struct {
	messages int64
	bytes    int64
}

func newMailboxes() *Mailboxes {
	return &Mailboxes{
		boxes:     map[string]*usage{},
		msgDesc:   prometheus.NewDesc("postoffice_mailbox_messages", "Messages in a mailbox.", []string{"mailbox"}, nil),
		bytesDesc: prometheus.NewDesc("postoffice_mailbox_bytes", "Octets of the messages in a mailbox (file sizes).", []string{"mailbox"}, nil),
		countDesc: prometheus.NewDesc("postoffice_mailboxes", "Mailboxes in the mailbox directory.", nil, nil),
		readyDesc: prometheus.NewDesc("postoffice_mailbox_stats_ready", "1 once the mailbox gauges were initialised from disk.", nil, nil),

		totalMsgDesc:   prometheus.NewDesc("postoffice_stored_messages", "Messages in all mailboxes.", nil, nil),
		totalBytesDesc: prometheus.NewDesc("postoffice_stored_bytes", "Octets of the messages in all mailboxes (file sizes).", nil, nil),
	}
}

// SetPerMailbox turns the per-mailbox series (labelled with the user
// names) on or off.
func (b *Mailboxes) SetPerMailbox(on bool) {
	b.mu.Lock()
	b.perMailbox = on
	b.mu.Unlock()
}

// Set replaces the figures of a mailbox.
func (b *Mailboxes) Set(mailbox string, messages int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boxes[mailbox] = &usage{messages: int64(messages), bytes: bytes}
}

// Add adjusts the figures of a mailbox by a delta.
func (b *Mailboxes) Add(mailbox string, messages int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.boxes[mailbox]
	if u == nil {
		u = &usage{}
		b.boxes[mailbox] = u
	}
	u.messages = max(0, u.messages+int64(messages))
	u.bytes = max(0, u.bytes+bytes)
}

// Get returns the figures of a mailbox.
func (b *Mailboxes) Get(mailbox string) (messages int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u := b.boxes[mailbox]; u != nil {
		return int(u.messages), u.bytes
	}
	return 0, 0
}

// SetReady marks the figures as initialised from disk.
func (b *Mailboxes) SetReady() {
	b.mu.Lock()
	b.ready = true
	b.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (b *Mailboxes) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.msgDesc
	ch <- b.bytesDesc
	ch <- b.countDesc
	ch <- b.readyDesc
	ch <- b.totalMsgDesc
	ch <- b.totalBytesDesc
}

// Collect implements prometheus.Collector.
func (b *Mailboxes) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var msgs, octets int64
	for name, u := range b.boxes {
		msgs += u.messages
		octets += u.bytes
		if b.perMailbox {
			ch <- prometheus.MustNewConstMetric(b.msgDesc, prometheus.GaugeValue, float64(u.messages), name)
			ch <- prometheus.MustNewConstMetric(b.bytesDesc, prometheus.GaugeValue, float64(u.bytes), name)
		}
	}
	ch <- prometheus.MustNewConstMetric(b.totalMsgDesc, prometheus.GaugeValue, float64(msgs))
	ch <- prometheus.MustNewConstMetric(b.totalBytesDesc, prometheus.GaugeValue, float64(octets))
	ch <- prometheus.MustNewConstMetric(b.countDesc, prometheus.GaugeValue, float64(len(b.boxes)))
	ready := 0.0
	if b.ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(b.readyDesc, prometheus.GaugeValue, ready)
}
