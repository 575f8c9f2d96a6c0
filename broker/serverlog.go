package broker

import (
	"fmt"
	"log/slog"
	"strings"
)

// serverLog hands an embedded NATS server's own log to the gateway's
// logger: authentication failures and permission violations (which only
// the server sees: an identity with a wrong or revoked key never reaches
// the gateway) at warn, other errors at error, warnings at warn. Notices
// (startup banners) are left out; the gateway logs its own start.
type serverLog struct{ log *slog.Logger }

// Noticef drops the server's notices.
func (serverLog) Noticef(string, ...any) {}

// Warnf logs a server warning.
func (s serverLog) Warnf(format string, v ...any) {
	s.log.Warn("nats server", "msg", fmt.Sprintf(format, v...))
}

// Fatalf logs a server fatal error (the server stops itself).
func (s serverLog) Fatalf(format string, v ...any) {
	s.log.Error("nats server fatal", "msg", fmt.Sprintf(format, v...))
}

// Errorf logs a server error, naming authentication failures and
// permission violations as such.
func (s serverLog) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(line, "authentication error"), strings.Contains(line, "Authentication Expired"):
		s.log.Warn("nats authentication failed", "detail", line)
	case strings.Contains(line, "Violation"):
		s.log.Warn("nats permissions violation", "detail", line)
	default:
		s.log.Error("nats server", "msg", line)
	}
}

// Debugf drops debug lines (never asked for: debug is off).
func (serverLog) Debugf(string, ...any) {}

// Tracef drops trace lines (never asked for: trace is off).
func (serverLog) Tracef(string, ...any) {}
