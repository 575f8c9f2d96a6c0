package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// SignatureHeader carries a webhook body's HMAC-SHA256 under the sink's
// secret: "sha256=" and the hex digest.
const SignatureHeader = "X-Tollgate-Signature"

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// sink delivers one alert; an error is a failed attempt.
type sink interface {
	deliver(ctx context.Context, a *schemas.Alert, raw []byte) error
}

func newSink(c SinkConfig, client *http.Client) sink {
	switch c.Type {
	case SinkSlack:
		return &slackSink{url: c.URL, client: client}
	case SinkCommand:
		return &commandSink{argv: c.Command}
	}
	secret := c.Secret
	if c.SecretEnv != "" {
		secret = os.Getenv(c.SecretEnv)
	}
	return &webhookSink{url: c.URL, secret: []byte(secret), headers: c.Headers, client: client}
}

// wants reports whether the sink takes alerts of this kind.
func (c SinkConfig) wants(a *schemas.Alert) bool {
	kind := a.Kind
	if kind == "" {
		kind = schemas.AlertHalt
	}
	return len(c.Kinds) == 0 || slices.Contains(c.Kinds, kind)
}

// webhookSink POSTs the alert's JSON as the gateway stored it.
type webhookSink struct {
	url     string
	secret  []byte
	headers map[string]string
	client  *http.Client
}

func (s *webhookSink) deliver(ctx context.Context, a *schemas.Alert, raw []byte) error {
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range s.headers {
		h.Set(k, v)
	}
	if len(s.secret) > 0 {
		h.Set(SignatureHeader, Sign(s.secret, raw))
	}
	h.Set("X-Tollgate-Run", a.RunID)
	return post(ctx, s.client, s.url, h, raw)
}

// slackSink posts a Slack incoming-webhook message ({"text": …}).
type slackSink struct {
	url    string
	client *http.Client
}

func (s *slackSink) deliver(ctx context.Context, a *schemas.Alert, _ []byte) error {
	body, err := json.Marshal(map[string]string{"text": Text(a)})
	if err != nil {
		return err
	}
	return post(ctx, s.client, s.url, http.Header{"Content-Type": {"application/json"}}, body)
}

// Text is an alert in one line, for people (Slack, alerts tail).
func Text(a *schemas.Alert) string {
	if a.Kind == schemas.AlertApproval {
		who := "any operator"
		if len(a.Approvers) > 0 {
			who = "group " + strings.Join(a.Approvers, " or ")
		}
		return fmt.Sprintf(":raised_hand: Tollgate: hop %s of run %s (%s → %s) waits for approval by %s until %s: tollgate approve %s %s",
			a.HopID, a.RunID, a.From, a.To, who, a.Deadline.Format("15:04:05 MST"), a.RunID, a.HopID)
	}
	what := a.Message
	if a.Limit != "" {
		what = fmt.Sprintf("%s: %s %g over %g", a.Message, a.Limit, a.Value, a.Bound)
	}
	return fmt.Sprintf(":rotating_light: Tollgate halted run %s (by %s, reason %s): %s; %d open hops cancelled; replay: tollgate replay %s",
		a.RunID, a.By, a.Reason, what, len(a.OpenHops), a.RunID)
}

func post(ctx context.Context, client *http.Client, url string, h http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post alert: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post alert: %s answered %s: %s", req.URL.Host, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// commandSink runs a program with the alert's JSON on its standard input.
type commandSink struct{ argv []string }

func (s *commandSink) deliver(ctx context.Context, a *schemas.Alert, raw []byte) error {
	cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
	cmd.Stdin = bytes.NewReader(raw)
	cmd.Env = append(os.Environ(), "TOLLGATE_ALERT_RUN="+a.RunID, "TOLLGATE_ALERT_KIND="+a.Kind, "TOLLGATE_ALERT_HOP="+a.HopID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("alert command %s: %w: %s", s.argv[0], err, bytes.TrimSpace(out))
	}
	return nil
}
