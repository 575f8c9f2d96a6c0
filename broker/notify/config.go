package notify

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Sink types.
const (
	SinkWebhook = "webhook"
	SinkSlack   = "slack"
	SinkCommand = "command"
)

// Config is the alerts section of the gateway config: where alerts go,
// and how hard the notifier tries.
type Config struct {
	// Sinks are where every alert is delivered.
	Sinks []SinkConfig `yaml:"sinks"`
	// Retry bounds the attempts at one sink before the alert goes to the
	// dead letters.
	Retry RetryConfig `yaml:"retry"`
	// ThrottlePerSecond bounds how often one sink is called (default 10
	// a second).
	ThrottlePerSecond int `yaml:"throttle_per_second"`
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration `yaml:"timeout"`
}

// SinkConfig is one sink.
type SinkConfig struct {
	// Name identifies the sink (letters, digits, - and _): its durable
	// consumer and its dead-letter subject are named after it.
	Name string `yaml:"name"`
	// Type is webhook, slack or command.
	Type string `yaml:"type"`
	// URL is the webhook's (webhook, slack).
	URL string `yaml:"url"`
	// Secret, for a webhook, signs the body: the request carries
	// X-Tollgate-Signature: sha256=<hex HMAC-SHA256 of the body>.
	// SecretEnv names an environment variable holding it instead.
	Secret    string `yaml:"secret"`
	SecretEnv string `yaml:"secret_env"`
	// Headers are added to a webhook's requests.
	Headers map[string]string `yaml:"headers"`
	// Command is run once per alert (command), the alert's JSON on its
	// standard input; a non-zero exit is a failed attempt.
	Command []string `yaml:"command"`
	// Kinds, when set, limits the sink to these alert kinds (halt,
	// approval).
	Kinds []string `yaml:"kinds,flow"`
}

// RetryConfig is the backoff of one sink's attempts.
type RetryConfig struct {
	// MaxRetries after the first attempt (default 5).
	MaxRetries int `yaml:"max_retries"`
	// InitialInterval (default 500 ms) grows by Multiplier (2) up to
	// MaxInterval (30 s).
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	Multiplier      float64       `yaml:"multiplier"`
}

// Enabled reports whether any sink is configured.
func (c *Config) Enabled() bool { return len(c.Sinks) > 0 }

// SetDefaults fills what the section leaves out.
func (c *Config) SetDefaults() {
	if c.Retry.MaxRetries == 0 {
		c.Retry.MaxRetries = 5
	}
	if c.Retry.InitialInterval == 0 {
		c.Retry.InitialInterval = 500 * time.Millisecond
	}
	if c.Retry.MaxInterval == 0 {
		c.Retry.MaxInterval = 30 * time.Second
	}
	if c.Retry.Multiplier == 0 {
		c.Retry.Multiplier = 2
	}
	if c.ThrottlePerSecond == 0 {
		c.ThrottlePerSecond = 10
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

var sinkName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports every problem of the section at once.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range c.Sinks {
		where := fmt.Sprintf("alerts.sinks[%d] %q", i, s.Name)
		if !sinkName.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("%s: name must be 1 to 64 letters, digits, - or _", where))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s: named twice", where))
		}
		seen[s.Name] = true
		switch s.Type {
		case SinkWebhook, SinkSlack:
			u, err := url.Parse(s.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("%s: url %q is not an http(s) URL", where, s.URL))
			}
			if len(s.Command) > 0 {
				errs = append(errs, fmt.Errorf("%s: command is for type command", where))
			}
		case SinkCommand:
			if len(s.Command) == 0 {
				errs = append(errs, fmt.Errorf("%s: command is required (a program and its arguments)", where))
			}
			if s.URL != "" {
				errs = append(errs, fmt.Errorf("%s: url is for webhooks", where))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: type %q is not webhook, slack or command", where, s.Type))
		}
		if (s.Secret != "" || s.SecretEnv != "") && s.Type != SinkWebhook {
			errs = append(errs, fmt.Errorf("%s: secret signs generic webhooks only", where))
		}
		if s.Secret != "" && s.SecretEnv != "" {
			errs = append(errs, fmt.Errorf("%s: give secret or secret_env, not both", where))
		}
		for _, k := range s.Kinds {
			if k != "halt" && k != "approval" {
				errs = append(errs, fmt.Errorf("%s: kind %q is not halt or approval", where, k))
			}
		}
	}
	if c.Retry.MaxRetries < 0 || c.Retry.InitialInterval < 0 || c.Retry.MaxInterval < 0 || c.Retry.Multiplier < 0 {
		errs = append(errs, errors.New("alerts.retry: values must not be negative"))
	}
	if c.ThrottlePerSecond < 0 {
		errs = append(errs, errors.New("alerts.throttle_per_second must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("alerts.timeout must not be negative"))
	}
	return errors.Join(errs...)
}
