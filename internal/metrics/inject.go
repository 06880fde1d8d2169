package metrics

import "github.com/prometheus/client_golang/prometheus"

// Injection holds the counters of the chaos rules and of the webhook,
// registered with the server's registry by NewInjection.
type Injection struct {
	chaos           *prometheus.CounterVec
	webhookSent     prometheus.Counter
	webhookFailures *prometheus.CounterVec
	webhookDropped  prometheus.Counter
	webhookRetries  prometheus.Counter
	webhookQueue    prometheus.Gauge
}

// NewInjection returns the chaos and webhook counters, registered in m's
// registry.
func NewInjection(m *Metrics) *Injection {
	i := &Injection{
		chaos: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_chaos_injected_total",
			Help: "SMTP faults injected by chaos rules, by stage (connect, ehlo, mail, rcpt, data, message) and action (reply, drop, delay, rate_limit)."}, []string{"stage", "action"}),
		webhookSent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_webhook_sent_total", Help: "Webhook notifications the receiver accepted (2xx)."}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postoffice_webhook_failures_total", Help: "Webhook calls that failed, by reason (status: a non-2xx answer, error: no answer or timeout) and whether the notification was then given up (final)."}, []string{"reason", "final"}),
		webhookDropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_webhook_dropped_total", Help: "Webhook notifications dropped because the queue was full (or still queued at shutdown)."}),
		webhookRetries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "postoffice_webhook_retries_total", Help: "Webhook calls that were retries of a failed one."}),
		webhookQueue:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "postoffice_webhook_queue_length", Help: "Webhook notifications waiting to be sent."}),
	}
	m.reg.MustRegister(i.chaos, i.webhookSent, i.webhookFailures, i.webhookDropped, i.webhookRetries, i.webhookQueue)
	for _, f := range []string{"true", "false"} {
		for _, r := range []string{"status", "error"} {
			i.webhookFailures.WithLabelValues(r, f)
		}
	}
	return i
}

// ChaosInjected counts one injected fault.
func (i *Injection) ChaosInjected(stage, action string) {
	i.chaos.WithLabelValues(stage, action).Inc()
}

// WebhookSent counts a notification accepted by the receiver.
func (i *Injection) WebhookSent() { i.webhookSent.Inc() }

// WebhookFailed counts a failed call; final when no retry follows.
func (i *Injection) WebhookFailed(reason string, final bool) {
	f := "false"
	if final {
		f = "true"
	}
	i.webhookFailures.WithLabelValues(reason, f).Inc()
}

// WebhookRetry counts a retried call.
func (i *Injection) WebhookRetry() { i.webhookRetries.Inc() }

// WebhookDropped counts a notification dropped unsent.
func (i *Injection) WebhookDropped() { i.webhookDropped.Inc() }

// WebhookQueue sets the queue length.
func (i *Injection) WebhookQueue(n int) { i.webhookQueue.Set(float64(n)) }
