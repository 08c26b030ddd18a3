package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogFlags configure logging. Embed them in a kong command.
type LogFlags struct {
	LogFormat string `name:"log-format" env:"LOG_FORMAT" enum:"text,json" default:"text" help:"Log format: text or json."`
	LogLevel  string `name:"log-level" env:"LOG_LEVEL" default:"info" help:"Log level: debug, info, warn or error."`
}

// Logger builds the logger, writing to w.
func (f *LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(f.LogLevel))); err != nil {
		return nil, Usage("LOG_LEVEL %q: want debug, info, warn or error", f.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	if f.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	if f.LogFormat != "" && f.LogFormat != "text" {
		return nil, fmt.Errorf("LOG_FORMAT %q: want json or text", f.LogFormat)
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
