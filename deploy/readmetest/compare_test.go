package readmetest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What a documented value stands for. Most values are exact. Those that
// differ from run to run are documented by their form, and the printed
// value must have that form:
//   - a string holding "…" matches any text in place of each "…";
//   - a UUID matches any lowercase UUID;
//   - an RFC 3339 UTC time matches any time written the same way (whole
//     seconds, or as many fractional digits);
//   - days_remaining matches within one day.
//
// The times are also checked against each other and the run: a printed
// issued_at falls around the run, and expires − issued_at and grace_ends −
// expires are as documented.

var (
	uuidRe     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	timeLikeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
	digitRe    = regexp.MustCompile(`\d`)
)

// matches reports whether a printed value got has the documented value
// want's value or form.
func matches(want, got any) bool {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		switch {
		case strings.Contains(w, "…"):
			parts := strings.Split(w, "…")
			for i, p := range parts {
				parts[i] = regexp.QuoteMeta(p)
			}
			return regexp.MustCompile(`^(?s)` + strings.Join(parts, ".*") + `$`).MatchString(g)
		case uuidRe.MatchString(w):
			return uuidRe.MatchString(g)
		case timeLikeRe.MatchString(w):
			return regexp.MustCompile(`^` + digitRe.ReplaceAllString(regexp.QuoteMeta(w), `\d`) + `$`).MatchString(g)
		}
		return w == g
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !matches(wv, gv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !matches(w[i], g[i]) {
				return false
			}
		}
		return true
	case json.Number:
		g, ok := got.(json.Number)
		return ok && w.String() == g.String()
	}
	return want == got // nil, bool
}

// compareObject lists how got differs from want. ran is when the commands
// ran.
func compareObject(want, got *object, ran time.Time) []string {
	var p []string
	if !slices.Equal(want.keys, got.keys) {
		p = append(p, fmt.Sprintf("keys: documented %v, printed %v", want.keys, got.keys))
	}
	for _, k := range want.keys {
		w := want.vals[k]
		g, ok := got.vals[k]
		if !ok {
			continue
		}
		if k == "days_remaining" {
			wn, werr := strconv.Atoi(fmt.Sprint(w))
			gn, gerr := strconv.Atoi(fmt.Sprint(g))
			if werr != nil || gerr != nil || gn < wn-1 || gn > wn+1 {
				p = append(p, fmt.Sprintf("%q: documented %v, printed %v (±1 allowed)", k, w, g))
			}
			continue
		}
		if !matches(w, g) {
			p = append(p, fmt.Sprintf("%q: documented %s, printed %s", k, compact(w), compact(g)))
		}
	}
	span := func(o *object, from, to string) (time.Duration, bool) {
		a, aok := o.vals[from].(string)
		b, bok := o.vals[to].(string)
		ta, err1 := time.Parse(time.RFC3339, a)
		tb, err2 := time.Parse(time.RFC3339, b)
		return tb.Sub(ta), aok && bok && err1 == nil && err2 == nil
	}
	for _, r := range [][2]string{{"issued_at", "expires"}, {"expires", "grace_ends"}} {
		dw, wok := span(want, r[0], r[1])
		dg, gok := span(got, r[0], r[1])
		if wok && (!gok || dw != dg) {
			p = append(p, fmt.Sprintf("%s − %s: documented %s, printed %s", r[1], r[0], dw, dg))
		}
	}
	if s, ok := got.vals["issued_at"].(string); ok && want.vals["issued_at"] != nil {
		if at, err := time.Parse(time.RFC3339, s); err != nil || at.Before(ran.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			p = append(p, fmt.Sprintf(`"issued_at": printed %s, not the time of the run (%s)`, s, ran.UTC().Format(time.RFC3339)))
		}
	}
	return p
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// result is what one command printed.
type result struct {
	cmd    command
	stdout string
}

// compareOutputs checks every documented output against the commands it
// names, in one run of the commands. A rerun of some commands (rerun) may
// leave some documented outputs without a command.
func compareOutputs(q *quickstart, results []result, ran time.Time, rerun bool) []string {
	var p []string
	for _, spec := range q.outputs {
		n := 0
		for _, r := range results {
			if !strings.Contains(r.cmd.text, spec.match) {
				continue
			}
			n++
			where := fmt.Sprintf("%s:%d: the output of line %d (%s)", spec.doc, spec.line, r.cmd.line, r.cmd.text)
			if spec.want == nil {
				if got := strings.TrimRight(r.stdout, "\n"); !matches(spec.text, got) {
					p = append(p, fmt.Sprintf("%s: documented %q, printed %q", where, spec.text, got))
				}
				continue
			}
			got, err := parseObject([]byte(r.stdout))
			if err != nil {
				p = append(p, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			for _, d := range compareObject(spec.want, got, ran) {
				p = append(p, where+": "+d)
			}
		}
		if n == 0 && !rerun {
			p = append(p, fmt.Sprintf("%s:%d: no command of the marked blocks contains %q", spec.doc, spec.line, spec.match))
		}
	}
	return p
}
