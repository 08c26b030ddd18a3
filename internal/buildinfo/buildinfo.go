// Package buildinfo says which build a binary is: the version set at link
// time (-ldflags "-X main.version=…"), else the main module's, the VCS
// commit the go command stamped, and the Go version. Every binary prints
// it (`--version`, `version`) and exports it as <name>_build_info.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Revision is the commit a build without VCS stamping sets at link time
// (the container image: -X github.com/licenseledger/ledger/internal/buildinfo.Revision=…).
var Revision string

// Info is a build.
type Info struct {
	Version  string // "dev" when neither the link nor the module says
	Revision string // the commit, "unknown" outside a VCS checkout
	Time     string // the commit's time, RFC 3339, or ""
	Modified bool   // built from a checkout with uncommitted changes
	Go       string
}

// Read returns the build of this binary; linked is the version the build
// set with -ldflags ("dev" or "" when it set none).
func Read(linked string) Info {
	i := Info{Version: linked, Revision: "unknown", Go: runtime.Version()}
	if Revision != "" {
		i.Revision = Revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if (i.Version == "" || i.Version == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is what `--version` prints after the program's name: version,
// commit (12 digits, "+dirty" when modified), commit time and Go version.
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += "+dirty"
	}
	parts := []string{i.Version, "commit " + rev}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	return fmt.Sprintf("%s (%s)", parts[0], strings.Join(append(parts[1:], i.Go), ", "))
}

// Collector is the gauge <namespace>_build_info{version,revision,goversion}
// = 1, as Prometheus exporters name it.
func (i Info) Collector(namespace string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: namespace + "_build_info",
		Help: "The build: 1, labelled with its version, commit and Go version."}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(i.Version, i.Revision, i.Go).Set(1)
	return g
}
