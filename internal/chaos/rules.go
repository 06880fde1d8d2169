// Package chaos injects faults into SMTP sessions on purpose, for the test
// suites that use Postoffice as their mail sink: at a stage of a session
// (connect, EHLO/HELO, MAIL, RCPT, DATA, the end of the message) a rule
// answers a given reply, drops the connection or delays, for the addresses
// it matches and with a probability; and a rate limit answers 421 beyond N
// messages per second per client IP.
//
// Rules come from a TOML file (--chaos) or from the JSON API
// (PUT /api/v1/chaos); see docs/api.md, "Chaos". The Engine is the SMTP
// engine's smtp.Policy. Without rules it costs one atomic load per stage.
package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"postoffice/internal/smtp"
)

// Actions of a rule.
const (
	ActionReply = "reply" // answer Code Enhanced Text instead of the engine
	ActionDrop  = "drop"  // close the connection without a reply
	ActionDelay = "delay" // wait Delay, then go on as usual
)

// Limits of a rule set, against mistakes.
const (
	MaxRules     = 100
	MaxDelay     = 10 * time.Minute
	MaxPerSecond = 100000
	maxTextLen   = 400 // a reply line is at most 512 octets (RFC 5321 §4.5.3.1.5)
	maxMatchLen  = 512
)

// Config is a rule set: the TOML file's form and the JSON body of
// PUT /api/v1/chaos (where the rules are "rules", in TOML [[rule]]).
type Config struct {
	// Seed seeds the random draws of probabilistic rules; with the same
	// seed and the same sequence of SMTP commands, the same faults happen.
	// 0 or absent: a random seed.
	Seed  int64  `json:"seed,omitempty" toml:"seed"`
	Rules []Rule `json:"rules" toml:"rule"`
	Rate  *Rate  `json:"rate,omitempty" toml:"rate"`
}

// Rule is one fault.
type Rule struct {
	// Stage is connect, ehlo (HELO too), mail, rcpt, data (the DATA
	// command, or the first BDAT chunk) or message (after the message
	// data, before it is stored and answered).
	Stage string `json:"stage" toml:"stage"`
	// Match is a glob (* any run, ? one character, case-insensitive) on
	// the client IP (connect), the HELO/EHLO name (ehlo), the reverse-path
	// (mail; "" for <>), the forward-path (rcpt), or the reverse-path or
	// any recipient (data, message). Empty matches everything.
	Match string `json:"match,omitempty" toml:"match"`
	// Probability, in (0, 1], that a matching command is hit; absent
	// means 1 (deterministic).
	Probability *float64 `json:"probability,omitempty" toml:"probability"`
	// Action is reply, drop or delay.
	Action string `json:"action" toml:"action"`
	// Code, Enhanced, Text: the reply (action reply): a 4xx or 5xx code
	// (connect: 421 or 554), an RFC 3463 enhanced code of the same class
	// (default X.0.0; none at connect unless given), a printable ASCII text.
	Code     int    `json:"code,omitempty" toml:"code"`
	Enhanced string `json:"enhanced,omitempty" toml:"enhanced"`
	Text     string `json:"text,omitempty" toml:"text"`
	// Delay (action delay): a Go duration, at most 10m.
	Delay string `json:"delay,omitempty" toml:"delay"`

	stage smtp.Stage
	delay time.Duration
	err   *smtp.Error
}

// Rate is the rate limit: beyond PerSecond MAIL commands within any one
// second from one client IP, MAIL gets 421 4.7.0 and the connection closes.
type Rate struct {
	PerSecond int `json:"per_second" toml:"per_second"`
}

// ParseJSON reads a rule set from JSON (unknown fields are errors) and
// validates it.
func ParseJSON(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("bad JSON: more than one value")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadFile reads a rule set from the TOML file at path (unknown keys are
// errors) and validates it.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.SplitN(err.Error(), "\n", 2)[0])
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%s: unknown key %q", path, und[0].String())
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Validate checks the rule set and prepares its rules.
func (c *Config) Validate() error {
	if len(c.Rules) > MaxRules {
		return fmt.Errorf("at most %d rules", MaxRules)
	}
	if c.Rate != nil && (c.Rate.PerSecond < 1 || c.Rate.PerSecond > MaxPerSecond) {
		return fmt.Errorf("rate.per_second: must be 1 to %d", MaxPerSecond)
	}
	for i := range c.Rules {
		if err := c.Rules[i].prepare(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

var stages = map[string]smtp.Stage{
	"connect": smtp.StageConnect, "ehlo": smtp.StageHelo, "helo": smtp.StageHelo,
	"mail": smtp.StageMail, "rcpt": smtp.StageRcpt, "data": smtp.StageData, "message": smtp.StageMessage,
}

func (r *Rule) prepare() error {
	st, ok := stages[strings.ToLower(r.Stage)]
	if !ok {
		return fmt.Errorf("stage %q is not connect, ehlo, mail, rcpt, data or message", r.Stage)
	}
	r.stage = st
	r.Stage = string(st)
	if len(r.Match) > maxMatchLen {
		return fmt.Errorf("match: at most %d characters", maxMatchLen)
	}
	if p := r.Probability; p != nil && !(*p > 0 && *p <= 1) {
		return fmt.Errorf("probability %v: must be more than 0 and at most 1", *p)
	}
	r.Action = strings.ToLower(r.Action)
	switch r.Action {
	case ActionReply:
		if r.Delay != "" {
			return errors.New("delay is for action delay")
		}
		e, err := reply(st, r.Code, r.Enhanced, r.Text)
		if err != nil {
			return err
		}
		r.err = e
		r.Enhanced = e.Enhanced
	case ActionDrop, ActionDelay:
		if r.Code != 0 || r.Enhanced != "" || r.Text != "" {
			return fmt.Errorf("code, enhanced and text are for action reply, not %s", r.Action)
		}
		if r.Action == ActionDrop {
			if r.Delay != "" {
				return errors.New("delay is for action delay")
			}
			break
		}
		d, err := time.ParseDuration(r.Delay)
		if err != nil || d <= 0 || d > MaxDelay {
			return fmt.Errorf("delay %q: want a duration such as \"2s\", more than 0 and at most %s", r.Delay, MaxDelay)
		}
		r.delay = d
	default:
		return fmt.Errorf("action %q is not reply, drop or delay", r.Action)
	}
	return nil
}

// reply validates an injected reply. Codes: RFC 5321 §4.2.1 (three digits,
// the second 0-5); only failures (4xx, 5xx) are injected. At connect RFC
// 5321 §3.1 and §4.3.2 allow 554 instead of the greeting, and §3.8 421.
// Enhanced codes: RFC 3463 §2, class.subject.detail, whose class must be
// the reply's first digit.
func reply(st smtp.Stage, code int, enhanced, text string) (*smtp.Error, error) {
	if code < 400 || code > 599 || code/10%10 > 5 {
		return nil, fmt.Errorf("code %d: want a failure reply, 4xx or 5xx with a second digit 0-5 (RFC 5321 §4.2.1)", code)
	}
	if st == smtp.StageConnect && code != 421 && code != 554 {
		return nil, fmt.Errorf("code %d: at connect only 421 or 554 (RFC 5321 §3.1, §3.8)", code)
	}
	class := strconv.Itoa(code / 100)
	if enhanced == "" && st != smtp.StageConnect {
		// RFC 2034 §3: with ENHANCEDSTATUSCODES every reply after the
		// greeting carries one.
		enhanced = class + ".0.0"
	}
	if enhanced != "" {
		parts := strings.Split(enhanced, ".")
		if len(parts) != 3 || !digits(parts[1]) || !digits(parts[2]) {
			return nil, fmt.Errorf("enhanced %q: want class.subject.detail, e.g. %s.1.1 (RFC 3463 §2)", enhanced, class)
		}
		if parts[0] != class {
			return nil, fmt.Errorf("enhanced %q: its class must be %s, as the code %d (RFC 3463 §2)", enhanced, class, code)
		}
	}
	if len(text) > maxTextLen {
		return nil, fmt.Errorf("text: at most %d characters", maxTextLen)
	}
	for i := 0; i < len(text); i++ {
		if c := text[i]; c < 0x20 || c > 0x7e {
			return nil, errors.New("text: printable ASCII only (RFC 5321 §4.2.1)")
		}
	}
	if text == "" {
		text = "Error (chaos)"
	}
	return &smtp.Error{Code: code, Enhanced: enhanced, Message: text}, nil
}

func digits(s string) bool {
	if len(s) < 1 || len(s) > 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// match reports whether glob pattern p matches s: '*' any run of
// characters, '?' one, case-insensitive (ASCII).
func match(p, s string) bool {
	p, s = strings.ToLower(p), strings.ToLower(s)
	// Iterative matching with one backtrack point per '*'.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
