package manifesttest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/licenseledger/ledger/gatekeeper"
)

// --- metric names the binaries register ---------------------------------------

var metricLiteralRe = regexp.MustCompile(`"((?:ledger|gatekeeper)_[a-z0-9_]+)"`)

// knownMetrics are the ledger_* and gatekeeper_* names written as string
// literals in the module's non-test Go code.
func knownMetrics(t testing.TB) map[string]bool {
	t.Helper()
	root := repoRoot(t)
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "manifesttest", "testenv":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range metricLiteralRe.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"ledger_projector_pg_lag_events", "gatekeeper_decisions_total", "gatekeeper_staleness_seconds"} {
		if !names[must] {
			t.Fatalf("metric scan found no %s: the scan is broken", must)
		}
	}
	return names
}

func isKnownMetric(known map[string]bool, name string) bool {
	if known[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

// --- links --------------------------------------------------------------------

var (
	linkRe    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRe = regexp.MustCompile(`(?m)^#{1,6}\s+(.+)$`)
)

// slug is the anchor GitHub gives a heading.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkLinks: every relative link of the Markdown file rel resolves, and so
// does its #anchor.
func checkLinks(root, rel, text string) []string {
	var p []string
	for _, m := range linkRe.FindAllStringSubmatch(text, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		resolved := rel
		if file != "" {
			resolved = filepath.ToSlash(filepath.Join(filepath.Dir(rel), file))
		}
		data, err := os.ReadFile(filepath.Join(root, resolved))
		if err != nil {
			p = append(p, fmt.Sprintf("%s: link %s: %s does not exist", rel, target, resolved))
			continue
		}
		if anchor != "" && strings.HasSuffix(resolved, ".md") {
			found := false
			for _, h := range headingRe.FindAllStringSubmatch(string(data), -1) {
				found = found || slug(h[1]) == anchor
			}
			if !found {
				p = append(p, fmt.Sprintf("%s: link %s: no heading #%s in %s", rel, target, anchor, resolved))
			}
		}
	}
	return p
}

// --- alert rules --------------------------------------------------------------

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

var (
	exprMetricRe  = regexp.MustCompile(`\b((?:ledger|gatekeeper)_[a-z0-9_]+)`)
	rangeRe       = regexp.MustCompile(`\[([^\]]*)\]`)
	promDuration  = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)
	stalenessExpr = regexp.MustCompile(`gatekeeper_staleness_seconds\)?\s*>\s*([0-9.]+)`)
)

// rulesFile is the alert rules' one source: docs/deploy.md links to it.
const rulesFile = "deploy/prometheus/alerts.yml"

// alertRules parses a Prometheus rule file.
func alertRules(file string) ([]alertRule, error) {
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(file), &f); err != nil {
		return nil, fmt.Errorf("the alert rules do not parse: %w", err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s holds no alert rules (groups:)", rulesFile)
	}
	return rules, nil
}

func balanced(s string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range s {
		if r == '"' {
			inString = !inString
		}
		if inString {
			continue
		}
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

// requiredAlerts: each must appear in some rule's expression.
var requiredAlerts = []struct {
	what string
	re   *regexp.Regexp
}{
	{"ledger_projector_pg_lag_events growing", regexp.MustCompile(`ledger_projector_pg_lag_events\b`)},
	{"ledger_projector_stopped == 1", regexp.MustCompile(`ledger_projector_stopped\)?\s*==\s*1`)},
	{"gatekeeper_staleness_seconds > max-staleness", stalenessExpr},
	{"denied license_state_unavailable rate", regexp.MustCompile(`rate\(gatekeeper_decisions_total\{result="` + gatekeeper.ResultDenied + `",code="` + gatekeeper.CodeStateUnavailable + `"\}`)},
	{"ledger_append_conflicts_total rate", regexp.MustCompile(`rate\(ledger_append_conflicts_total\[`)},
	{"ledger_fold_skipped_total increase", regexp.MustCompile(`increase\(ledger_fold_skipped_total\[`)},
	{"ledger_rate_limited_total", regexp.MustCompile(`ledger_rate_limited_total\b`)},
	{"/readyz failing", regexp.MustCompile(`kube_deployment_status_replicas_available|probe_success|gatekeeper_state_loaded`)},
	{"a license expiring within 14 days", regexp.MustCompile(`ledger_license_soonest_expiry_timestamp_seconds\)?\s*-\s*time\(\)\s*<\s*14 \* 86400`)},
	{"orgs in grace", regexp.MustCompile(`ledger_orgs\{status="grace"\}`)},
	{"orgs expired while enforcement is on", regexp.MustCompile(`ledger_orgs\{status="expired"\}.*\band\b.*ledger_enforcement_on`)},
}

func checkAlertRules(file string, known map[string]bool, maxStaleness time.Duration) []string {
	rules, err := alertRules(file)
	if err != nil {
		return []string{err.Error()}
	}
	var p []string
	seen := map[string]bool{}
	var exprs []string
	for i, r := range rules {
		where := fmt.Sprintf("alert %d (%s)", i, r.Alert)
		if r.Alert == "" || r.Expr == "" {
			p = append(p, where+": needs alert and expr")
			continue
		}
		if seen[r.Alert] {
			p = append(p, where+": duplicate name")
		}
		seen[r.Alert] = true
		exprs = append(exprs, r.Expr)
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			p = append(p, fmt.Sprintf("%s: severity %q, want warning or critical", where, s))
		}
		if r.Annotations["summary"] == "" {
			p = append(p, where+": no summary annotation")
		}
		if r.For != "" && !promDuration.MatchString(r.For) {
			p = append(p, fmt.Sprintf("%s: for %q is not a duration", where, r.For))
		}
		if !balanced(r.Expr) {
			p = append(p, where+": unbalanced brackets in expr")
		}
		for _, m := range rangeRe.FindAllStringSubmatch(r.Expr, -1) {
			if !promDuration.MatchString(m[1]) {
				p = append(p, fmt.Sprintf("%s: range [%s] is not a duration", where, m[1]))
			}
		}
		for _, m := range exprMetricRe.FindAllStringSubmatch(r.Expr, -1) {
			if !isKnownMetric(known, m[1]) {
				p = append(p, fmt.Sprintf("%s: %s is no metric the binaries register", where, m[1]))
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, req := range requiredAlerts {
		if !req.re.MatchString(all) {
			p = append(p, fmt.Sprintf("no alert on %s", req.what))
		}
	}
	if m := stalenessExpr.FindStringSubmatch(all); m != nil {
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v != maxStaleness.Seconds() {
			p = append(p, fmt.Sprintf("the staleness alert fires at %ss; the gatekeepers' max staleness is %s", m[1], maxStaleness))
		}
	}
	return p
}

// checkMetricTable: the metric names of the "What to monitor" table exist.
func checkMetricTable(doc string, known map[string]bool) []string {
	_, section, ok := strings.Cut(doc, "## What to monitor")
	if !ok {
		return []string{`no "## What to monitor" section`}
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var p []string
	n := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`((?:ledger|gatekeeper)_[a-z0-9_]+)").FindAllStringSubmatch(cell, -1) {
			n++
			if !isKnownMetric(known, m[1]) {
				p = append(p, fmt.Sprintf("the metric table lists %s, which no binary registers", m[1]))
			}
		}
	}
	if n < 8 {
		p = append(p, fmt.Sprintf("the metric table names only %d metrics", n))
	}
	return p
}

// checkDocSections: the topics docs/deploy.md must cover.
func checkDocSections(doc string) []string {
	var p []string
	for _, h := range []string{"## Topologies", "### Single node", "### Scaled", "### Kubernetes", "## Sizing",
		"## What to monitor", "## Upgrades", "## Backups"} {
		if !strings.Contains(doc, "\n"+h+"\n") {
			p = append(p, fmt.Sprintf("no %q section", h))
		}
	}
	for _, link := range []string{"deploy-single-node.md", "deploy-scaled.md", "../deploy/proxies/README.md", "../deploy/kubernetes/README.md"} {
		if !strings.Contains(doc, "]("+link+")") {
			p = append(p, fmt.Sprintf("no link to %s", link))
		}
	}
	section := func(h string) string {
		_, s, _ := strings.Cut(doc, h+"\n")
		s, _, _ = strings.Cut(s, "\n## ")
		return s
	}
	// Upgrade order: migrate, then readers, then ledgers.
	up := section("## Upgrades")
	iMigrate, iGate, iLedgers := strings.Index(up, "ledger migrate up"), strings.Index(up, "**Gatekeepers**"), strings.Index(up, "then ledgers, last")
	if iMigrate < 0 || iGate < 0 || iLedgers < 0 || !(iMigrate < iGate && iGate < iLedgers) {
		p = append(p, "Upgrades: want ledger migrate up, then **Gatekeepers**, then projectors and ledgers last")
	}
	for _, want := range []string{"WAL", "nats stream backup", "$DATA_DIR", "ledger backup", "ledger audit digest", "off-site"} {
		if !strings.Contains(section("## Backups"), want) {
			p = append(p, fmt.Sprintf("Backups: nothing about %s", want))
		}
	}
	for _, want := range []string{"KiB per cached org", "PostgreSQL", "NATS"} {
		if !strings.Contains(section("## Sizing"), want) {
			p = append(p, fmt.Sprintf("Sizing: nothing about %s", want))
		}
	}
	return p
}

// maxStaleness is the gatekeepers' --max-staleness: the ConfigMap's, else
// the default their --help shows.
func maxStaleness(t testing.TB, m *manifests) time.Duration {
	t.Helper()
	if data, ok := m.configMapData(t, namespace, "gatekeeper-config"); ok {
		if v := data["GATEKEEPER_MAX_STALENESS"]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	mm := regexp.MustCompile(`--max-staleness="?([^"\s]+)`).FindStringSubmatch(help(t, "/gatekeeper"))
	if mm == nil {
		t.Fatal("gatekeeper --help shows no --max-staleness default")
	}
	d, err := time.ParseDuration(mm[1])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeployDoc(t *testing.T) {
	root := repoRoot(t)
	doc := string(readRepoFile(t, "docs/deploy.md"))
	known := knownMetrics(t)
	var p []string
	p = append(p, checkDocSections(doc)...)
	p = append(p, checkAlertRules(string(readRepoFile(t, rulesFile)), known, maxStaleness(t, loadManifests(t)))...)
	if !strings.Contains(doc, "(../"+rulesFile+")") {
		p = append(p, "docs/deploy.md does not link to "+rulesFile)
	}
	p = append(p, checkMetricTable(doc, known)...)
	for _, f := range []string{"docs/deploy.md", "deploy/kubernetes/README.md"} {
		p = append(p, checkLinks(root, f, string(readRepoFile(t, f)))...)
	}
	for _, s := range p {
		t.Error(s)
	}
}

func TestDeployDocChecksCanFail(t *testing.T) {
	root := repoRoot(t)
	doc := string(readRepoFile(t, "docs/deploy.md"))
	known := knownMetrics(t)
	rules := string(readRepoFile(t, rulesFile))
	run := func(d, rules string) string {
		p := append(checkDocSections(d), checkAlertRules(rules, known, 30*time.Second)...)
		p = append(p, checkMetricTable(d, known)...)
		p = append(p, checkLinks(root, "docs/deploy.md", d)...)
		return strings.Join(p, "\n")
	}
	if got := run(doc, rules); got != "" {
		t.Fatalf("the document itself fails: %s", got)
	}
	cases := []struct{ old, new, want string }{
		{"expr: max(ledger_projector_stopped) == 1", "expr: max(ledger_projector_halted) == 1", "ledger_projector_halted is no metric"},
		{"expr: max(ledger_projector_stopped) == 1", "expr: max(ledger_projector_stopped) > 0", "no alert on ledger_projector_stopped == 1"},
		{`code="license_state_unavailable"}[5m]`, `code="state_unavailable"}[5m]`, "no alert on denied license_state_unavailable rate"},
		{"(gatekeeper_staleness_seconds) > 30", "(gatekeeper_staleness_seconds) > 60", "fires at 60s"},
		{"time() < 14 * 86400", "time() < 30 * 86400", "no alert on a license expiring within 14 days"},
		{`and on() max(ledger_enforcement_on) == 1`, ``, "no alert on orgs expired while enforcement is on"},
		{"max(ledger_orgs{status=\"grace\"})", "max(ledger_org{status=\"grace\"})", "ledger_org is no metric"},
		{"increase(ledger_fold_skipped_total[1h])", "increase(ledger_fold_skipped_total[1 hour])", "is not a duration"},
		{"rate(ledger_append_conflicts_total[10m])) > 1", "rate(ledger_append_conflicts_total[10m]) > 1", "unbalanced"},
		{"labels: {severity: critical}", "labels: {severity: page}", `severity "page"`},
		{"| `gatekeeper_orgs_cached`", "| `gatekeeper_orgs_in_cache`", "lists gatekeeper_orgs_in_cache"},
		{"(../deploy/proxies/README.md)", "(../deploy/proxy/README.md)", "deploy/proxy/README.md does not exist"},
		{"## Backups\n", "## Keeping copies\n", `no "## Backups" section`},
		{"`nats stream backup LICENSES DIR --check`", "`nats stream snapshot`", "Backups: nothing about nats stream backup"},
		{"(design.md)", "(design.md#no-such-heading)", "no heading #no-such-heading"},
	}
	for _, c := range cases {
		d, r := doc, rules
		switch {
		case strings.Contains(rules, c.old):
			r = strings.Replace(rules, c.old, c.new, 1)
		case strings.Contains(doc, c.old):
			d = strings.Replace(doc, c.old, c.new, 1)
		default:
			t.Errorf("neither docs/deploy.md nor %s contains %q: update this case", rulesFile, c.old)
			continue
		}
		if got := run(d, r); !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}
}
