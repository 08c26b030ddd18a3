package gatekeeper

import (
	"strconv"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/doctable"
)

// docs/errors.md lists every denial code with the status the proxy and
// the middleware answer, and a fix.
func TestEveryDenialIsDocumentedWithItsFix(t *testing.T) {
	rows := doctable.Read(t, "docs/errors.md", "Gatekeeper denials")
	known := map[string]bool{}
	for _, code := range codes {
		known[code] = true
		r, ok := rows[code]
		switch {
		case !ok:
			t.Errorf("docs/errors.md does not list %s", code)
		case len(r.Cells) != 4:
			t.Errorf("docs/errors.md, %s: %d cells, want code | status | means | fix", code, len(r.Cells))
		case r.Cells[1] != strconv.Itoa(statusOf(code)):
			t.Errorf("docs/errors.md, %s: status %s, the gatekeeper answers %d", code, r.Cells[1], statusOf(code))
		case len(r.Cells[3]) < 10:
			t.Errorf("docs/errors.md, %s: no fix", code)
		}
	}
	for code := range rows {
		if !known[code] {
			t.Errorf("docs/errors.md lists %s, which the gatekeeper never answers", code)
		}
	}
}
