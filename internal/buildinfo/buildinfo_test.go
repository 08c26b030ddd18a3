package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReadAndString(t *testing.T) {
	i := Read("v1.4.0")
	if i.Version != "v1.4.0" || !strings.HasPrefix(i.Go, "go") {
		t.Fatalf("Read: %+v", i)
	}
	Revision = "0123456789abcdef0123"
	defer func() { Revision = "" }()
	i = Read("")
	if i.Revision != "0123456789abcdef0123" || i.Version == "" {
		t.Fatalf("a linked revision: %+v", i)
	}
	i.Modified, i.Time = true, "2026-12-07T10:00:00Z"
	if got, want := i.String(), i.Version+" (commit 0123456789ab+dirty, 2026-12-07T10:00:00Z, "+i.Go+")"; got != want {
		t.Fatalf("String %q, want %q", got, want)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(i.Collector("ledger"))
	want := `# HELP ledger_build_info The build: 1, labelled with its version, commit and Go version.
# TYPE ledger_build_info gauge
ledger_build_info{goversion="` + i.Go + `",revision="0123456789abcdef0123",version="` + i.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ledger_build_info"); err != nil {
		t.Fatal(err)
	}
}
