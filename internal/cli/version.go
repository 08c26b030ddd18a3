package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/licenseledger/ledger/internal/buildinfo"
)

// VersionCmd is the version subcommand of every program: the build's
// module version, commit, commit time and Go version, as one line (the
// same as --version), a JSON object or key/value lines.
type VersionCmd struct {
	Output string `short:"o" enum:"text,json,table" default:"text" placeholder:"text|json|table" help:"text: one line, as --version prints it (default); json: {name, version, commit, commit_time, modified, go}; table: key/value lines."`
}

// Print writes the build of program name in c's format.
func (c *VersionCmd) Print(w io.Writer, name string, bi buildinfo.Info) error {
	switch c.Output {
	case "json":
		b, err := json.MarshalIndent(struct {
			Name       string `json:"name"`
			Version    string `json:"version"`
			Commit     string `json:"commit"`
			CommitTime string `json:"commit_time"`
			Modified   bool   `json:"modified"`
			Go         string `json:"go"`
		}{name, bi.Version, bi.Revision, bi.Time, bi.Modified, bi.Go}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "table":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, kv := range [][2]string{{"name", name}, {"version", bi.Version}, {"commit", bi.Revision},
			{"commit_time", dash(bi.Time)}, {"modified", strconv.FormatBool(bi.Modified)}, {"go", bi.Go}} {
			fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
		}
		return tw.Flush()
	}
	_, err := fmt.Fprintln(w, name+" "+bi.String())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
