package gatekeeper

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// FeatureRule says that requests matching Pattern need every feature in
// Features.
type FeatureRule struct {
	// Pattern is a net/http.ServeMux pattern: "[METHOD ][HOST]/PATH" with
	// {name} and {name...} wildcards. Of several matching rules the most
	// specific wins, as in ServeMux.
	Pattern string
	// Features are all required (sorted, without duplicates once parsed).
	Features []string
	// Line is the rule's line in its file (0 when built in code).
	Line int
}

func (r FeatureRule) where() string {
	if r.Line > 0 {
		return fmt.Sprintf("line %d", r.Line)
	}
	return fmt.Sprintf("rule %q", r.Pattern)
}

// maxFeatureLine bounds a line of a features file.
const maxFeatureLine = 64 << 10

// ParseFeatures reads a features file: one rule per line,
// "[METHOD ]PATTERN FEATURE[,FEATURE…]" — the last field is the feature
// list (all required), the rest the ServeMux pattern. '#' starts a comment
// running to the end of the line; blank lines are skipped. Errors name the
// line; patterns are checked as ServeMux registers them, including
// conflicts between two lines.
func ParseFeatures(r io.Reader) ([]FeatureRule, error) {
	var rules []FeatureRule
	err := scanRuleLines(r, "features", func(line int, fields []string) error {
		if len(fields) < 2 || len(fields) > 3 {
			return fmt.Errorf("features line %d: want \"[METHOD ]PATTERN FEATURE[,FEATURE...]\", got %d fields", line, len(fields))
		}
		rule := FeatureRule{Pattern: strings.Join(fields[:len(fields)-1], " "), Line: line}
		for _, f := range strings.Split(fields[len(fields)-1], ",") {
			if !validFeature(f) {
				return fmt.Errorf("features line %d: feature %q: want ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", line, f)
			}
			rule.Features = append(rule.Features, f)
		}
		rules = append(rules, rule)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := buildFeatureMux(rules); err != nil {
		return nil, err
	}
	return normalizeRules(rules), nil
}

// scanRuleLines hands fn the fields of each line of a rules file (what
// names it in errors) that holds any: '#' starts a comment running to the
// end of the line, blank lines are skipped, and a line is at most
// maxFeatureLine bytes.
func scanRuleLines(r io.Reader, what string, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxFeatureLine)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		if fields := strings.Fields(text); len(fields) > 0 {
			if err := fn(line, fields); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return fmt.Errorf("%s line %d: longer than %d bytes", what, line+1, maxFeatureLine)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// normalizeRules returns a copy of rules with sorted, deduplicated
// feature lists.
func normalizeRules(rules []FeatureRule) []FeatureRule {
	out := make([]FeatureRule, len(rules))
	for i, r := range rules {
		fs := slices.Clone(r.Features)
		slices.Sort(fs)
		r.Features = slices.Compact(fs)
		out[i] = r
	}
	return out
}

// validFeature is the payload rule for feature names.
func validFeature(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte("_.:-", c) < 0) {
			return false
		}
	}
	return true
}

// ruleHandler marks a registered pattern: mux.Handler returns it for a
// request the pattern matches. It is never served.
type ruleHandler struct{ idx int }

func (ruleHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "gatekeeper route marker", http.StatusInternalServerError)
}

// register adds pattern to mux with handler h, turning ServeMux's panics
// (invalid pattern, conflict) into errors. A method must be upper case:
// ServeMux compares methods exactly, so "get /x" would never match a
// request and its rule would silently not apply.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if m, _, ok := strings.Cut(strings.TrimSpace(pattern), " "); ok && !strings.HasPrefix(m, "/") && strings.ToUpper(m) != m {
		return fmt.Errorf("method %q: methods are matched exactly, write it in upper case", m)
	}
	defer func() {
		if p := recover(); p != nil {
			err = errors.New(registeredAt.ReplaceAllString(fmt.Sprint(p), ""))
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// registeredAt is the source location ServeMux adds to a conflict.
var registeredAt = regexp.MustCompile(` \(registered at [^)]*\)`)

// buildFeatureMux registers every rule in a new ServeMux. A conflict
// names both lines.
func buildFeatureMux(rules []FeatureRule) (*http.ServeMux, error) {
	list := make([]muxRule, len(rules))
	for i, r := range rules {
		if len(r.Features) == 0 {
			return nil, fmt.Errorf("features %s: no feature", r.where())
		}
		for _, f := range r.Features {
			if !validFeature(f) {
				return nil, fmt.Errorf("features %s: feature %q: want ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", r.where(), f)
			}
		}
		list[i] = muxRule{pattern: r.Pattern, where: r.where()}
	}
	return buildRuleMux("features", list)
}

// muxRule is a pattern to register, with where it comes from (for errors).
type muxRule struct{ pattern, where string }

// buildRuleMux registers every rule's folded pattern in a new ServeMux,
// handler ruleHandler{idx: its index}. Errors start with what (the kind
// of rules); a conflict names both rules.
func buildRuleMux(what string, rules []muxRule) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	for i, r := range rules {
		if err := register(http.NewServeMux(), r.pattern, ruleHandler{}); err != nil {
			return nil, fmt.Errorf("%s %s: pattern %q: %s", what, r.where, r.pattern, patternError(err))
		}
		if err := register(mux, foldPattern(r.pattern), ruleHandler{idx: i}); err != nil {
			for j := range i {
				pair := http.NewServeMux()
				_ = register(pair, foldPattern(rules[j].pattern), ruleHandler{})
				if register(pair, foldPattern(r.pattern), ruleHandler{}) != nil {
					return nil, fmt.Errorf("%s %s: pattern %q conflicts with %s (%q): neither is more specific, or they are the same (rules match without regard to case)",
						what, r.where, r.pattern, rules[j].where, rules[j].pattern)
				}
			}
			return nil, fmt.Errorf("%s %s: pattern %q: %s", what, r.where, r.pattern, patternError(err))
		}
	}
	return mux, nil
}

// ParseSeatRoutes reads a seat routes file: the routes that consume a seat
// (adding a user), one per line, "[METHOD ]PATTERN" — a ServeMux pattern
// as in a features file, without a feature list, e.g. "POST /api/users".
// '#' starts a comment running to the end of the line; blank lines are
// skipped. Patterns match as feature rules do (method in upper case, host
// and path without regard to case); errors name the line, conflicts both
// lines.
func ParseSeatRoutes(r io.Reader) ([]string, error) {
	var routes []string
	var list []muxRule
	err := scanRuleLines(r, "seat routes", func(line int, fields []string) error {
		if len(fields) > 2 {
			return fmt.Errorf("seat routes line %d: want \"[METHOD ]PATTERN\" (a seat route has no feature list), got %d fields", line, len(fields))
		}
		p := strings.Join(fields, " ")
		routes = append(routes, p)
		list = append(list, muxRule{pattern: p, where: fmt.Sprintf("line %d", line)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := buildRuleMux("seat routes", list); err != nil {
		return nil, err
	}
	return routes, nil
}

// buildSeatMux registers Config.SeatRoutes.
func buildSeatMux(routes []string) (*http.ServeMux, error) {
	list := make([]muxRule, len(routes))
	for i, p := range routes {
		list[i] = muxRule{pattern: p, where: fmt.Sprintf("entry %d", i+1)}
	}
	return buildRuleMux("seat routes", list)
}

// patternError trims ServeMux's panic text to its reason.
func patternError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "parsing ") {
		return s[i+2:]
	}
	return s
}
