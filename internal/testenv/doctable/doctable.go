// Package doctable reads the tables of the docs' Markdown, for tests that
// check a documented list against the code so that neither drifts.
package doctable

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Row is one table row: its cells, trimmed, with the code spans' backticks
// removed from the first.
type Row struct {
	Key   string
	Cells []string
}

// Read returns the rows of the first table under the heading of the
// Markdown file doc (a path from the module's root), keyed by their first
// cell.
func Read(t testing.TB, doc, heading string) map[string]Row {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..", "..")
	data, err := os.ReadFile(filepath.Join(root, doc))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]Row{}
	in, table := false, false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			if table {
				return rows
			}
			in = strings.TrimSpace(strings.TrimLeft(line, "#")) == heading
		case in && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			if strings.HasPrefix(cells[0], "---") || !table {
				table = true // the header and the separator
				continue
			}
			key := strings.Trim(cells[0], "`")
			if _, dup := rows[key]; dup {
				t.Errorf("%s, %s: %q is listed twice", doc, heading, key)
			}
			rows[key] = Row{Key: key, Cells: cells}
		case in && table:
			return rows
		}
	}
	if !table {
		t.Fatalf("%s: no table under the heading %q", doc, heading)
	}
	return rows
}
