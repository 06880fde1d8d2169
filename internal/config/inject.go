package config

import (
	"flag"
	"net/url"
	"os"
)

// The settings of fault injection (--chaos) and of the delivery webhook
// (--webhook-*).

func (c *Config) injectFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Chaos, "chaos", c.Chaos, "TOML file of SMTP fault-injection rules loaded at start and on SIGHUP (docs/api.md, Chaos); empty: none")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "http(s) URL that gets a JSON POST for every delivered message; empty: no webhook")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", c.WebhookSecret, "key of the HMAC-SHA256 signature header X-Postoffice-Signature of webhook calls; empty: unsigned")
	fs.IntVar(&c.WebhookRetries, "webhook-retries", c.WebhookRetries, "retries of a failed webhook call, 1s·2^n apart (capped at 1m)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", c.WebhookTimeout, "time limit of one webhook call")
	fs.IntVar(&c.WebhookQueue, "webhook-queue", c.WebhookQueue, "webhook notifications waiting at most; more are dropped (counted)")
}

func (c *Config) validateInject(bad func(flagName, format string, a ...any) error) error {
	if c.Chaos != "" {
		if st, err := os.Stat(c.Chaos); err != nil {
			return bad("chaos", "%v", err)
		} else if st.IsDir() {
			return bad("chaos", "%s is a directory, not a TOML file", c.Chaos)
		}
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("webhook-url", "%q is not an http:// or https:// URL", c.WebhookURL)
		}
	}
	switch {
	case c.WebhookRetries < 0 || c.WebhookRetries > 20:
		return bad("webhook-retries", "must be 0 to 20")
	case c.WebhookTimeout <= 0:
		return bad("webhook-timeout", "must be positive")
	case c.WebhookQueue < 1 || c.WebhookQueue > 1000000:
		return bad("webhook-queue", "must be 1 to 1000000")
	case c.WebhookSecret != "" && c.WebhookURL == "":
		return bad("webhook-secret", "needs --webhook-url")
	}
	return nil
}
