package httpapi

import (
	"strconv"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/doctable"
)

// docs/errors.md lists every error code the API answers, with its status
// and a fix, and nothing else.
func TestEveryAPIErrorIsDocumentedWithItsFix(t *testing.T) {
	rows := doctable.Read(t, "docs/errors.md", "Ledger API")
	codes := map[string]int{"unauthorized": 401, "method_not_allowed": 405}
	for code, status := range statusOf {
		codes[code] = status
	}
	for code, status := range codes {
		r, ok := rows[code]
		switch {
		case !ok:
			t.Errorf("docs/errors.md does not list %s", code)
		case len(r.Cells) != 4:
			t.Errorf("docs/errors.md, %s: %d cells, want code | status | means | fix", code, len(r.Cells))
		case r.Cells[1] != strconv.Itoa(status):
			t.Errorf("docs/errors.md, %s: status %s, the API answers %d", code, r.Cells[1], status)
		case len(r.Cells[3]) < 10:
			t.Errorf("docs/errors.md, %s: no fix", code)
		}
	}
	for code := range rows {
		if _, ok := codes[code]; !ok {
			t.Errorf("docs/errors.md lists %s, which the API never answers", code)
		}
	}
}
