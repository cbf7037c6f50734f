package mesh

import (
	"context"
	"log/slog"
	"strings"
)

// logBridge is the io.Writer behind memberlist's *log.Logger. memberlist
// writes one line per call, "[LEVEL] memberlist: message"; the bridge
// re-emits each line on the mesh's slog.Logger at debug level, with
// memberlist's level as the "memberlist_level" attribute.
//
// memberlist has no callback for "this node now suspects a peer"; the only
// signal is its log line "Suspect <name> has failed, no acks received",
// written just before it starts the suspicion timer. The bridge hands such
// names to onSuspect. See the package documentation for what the
// resulting StateSuspect means.
type logBridge struct {
	log       *slog.Logger
	onSuspect func(name string)
}

// Write handles one log line from memberlist. It never fails.
func (w *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := "", line
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if lv, after, ok := strings.Cut(rest, "]"); ok {
			level, msg = lv, strings.TrimSpace(after)
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.LogAttrs(context.Background(), slog.LevelDebug, msg,
			slog.String("component", "memberlist"), slog.String("memberlist_level", level))
	}
	if name, ok := parseSuspectLine(msg); ok && w.onSuspect != nil {
		w.onSuspect(name)
	}
	return len(p), nil
}

// parseSuspectLine extracts the node name from memberlist's
// "Suspect %s has failed, no acks received" message.
func parseSuspectLine(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "Suspect ")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, " has failed, no acks received")
	if !ok || name == "" {
		return "", false
	}
	return name, true
}
