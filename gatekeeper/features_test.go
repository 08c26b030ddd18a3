package gatekeeper

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseFeatures(t *testing.T) {
	rules, err := ParseFeatures(strings.NewReader(featuresFile + "\n  PUT   /x/{id}   b,a,b  \n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []FeatureRule{
		{Pattern: "GET /api/projects/{id}/export", Features: []string{"audit_export"}, Line: 3},
		{Pattern: "/api/chat/", Features: []string{"chat_connector"}, Line: 4},
		{Pattern: "POST /api/chat/{room}/bots", Features: []string{"bots", "chat_connector"}, Line: 5},
		{Pattern: "/api/sso/{rest...}", Features: []string{"sso"}, Line: 6},
		{Pattern: "PUT /x/{id}", Features: []string{"a", "b"}, Line: 8},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Fatalf("rules\n%+v\nwant\n%+v", rules, want)
	}
	if rules, err := ParseFeatures(strings.NewReader("# nothing\n\n")); err != nil || len(rules) != 0 {
		t.Fatalf("empty file: %v %v", rules, err)
	}
}

func TestParseFeaturesErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"/a f\n/b\n", "line 2: want"},
		{"GET /a b f\n", "line 1: want"},
		{"# c\n/a f,\n", `line 2: feature ""`},
		{"/a f,-g\n", `line 1: feature "-g"`},
		{"/a f g,h\n", "line 1: pattern"},
		{"GET a f\n", `line 1: pattern "GET a"`},
		{"/a/{x f\n", `line 1: pattern "/a/{x"`},
		{"/a/{x...}/b f\n", "line 1: pattern"},
		{"/a f\n\nGET /a/{x} g\nPOST /{y}/b h\nGET /{z}/b i\n", `line 5: pattern "GET /{z}/b" conflicts with line 3 ("GET /a/{x}")`},
		{"/a f\n/a g\n", `line 2: pattern "/a" conflicts with line 1 ("/a")`},
		{"get /a f\n", `line 1: pattern "get /a": method "get"`},
		{"/a " + strings.Repeat("f", 129) + "\n", "line 1: feature"},
		{"/a f\n/b " + strings.Repeat("x", maxFeatureLine) + "\n", "line 2: longer than"},
	} {
		_, err := ParseFeatures(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.file[:min(len(tc.file), 60)], err, tc.want)
		}
	}
	// Rules built in code are checked too.
	if _, err := New(newWorld(t), Config{Features: []FeatureRule{{Pattern: "/a"}}}); err == nil {
		t.Error("a rule without features accepted")
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"GET /api/license"}}); err != nil {
		t.Errorf("a repeated default allow entry: %v", err)
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"GET,HEAD /api/{y}", "GET /{x}/license"}}); err == nil ||
		!strings.Contains(err.Error(), `"GET /{x}/license"`) || !strings.Contains(err.Error(), "conflicts with") || strings.Contains(err.Error(), "registered at") {
		t.Errorf("conflicting allow entries: %v", err)
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"/status"}}); err == nil || !strings.Contains(err.Error(), "every entry names its methods") {
		t.Errorf("an allow entry without methods: %v", err)
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"GET,post /x"}}); err == nil {
		t.Error("a lower-case method in a list accepted")
	}
	if _, err := New(newWorld(t), Config{Features: []FeatureRule{{Pattern: "/Premium/{x}", Features: []string{"a"}}, {Pattern: "/premium/{y}", Features: []string{"b"}}}}); err == nil ||
		!strings.Contains(err.Error(), "without regard to case") {
		t.Errorf("rules equal but for case: %v", err)
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"post /x"}}); err == nil {
		t.Error("a lower-case method accepted")
	}
	if _, err := New(newWorld(t), Config{Allow: []string{"nope"}}); err == nil {
		t.Error("an invalid allow pattern accepted")
	}
}

func TestHostPatterns(t *testing.T) {
	w := decisionWorld(t)
	rules, err := ParseFeatures(strings.NewReader("admin.gate.test/ sso\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, w, newClock(t1), Config{Features: rules})
	r := req(t, "GET", "/x", "nofeat", local)
	r.Host = "admin.gate.test:8443"
	expect(t, "host rule", g.Decide(r), false, 403, CodeFeatureNotLicensed)
	r.Host = "www.gate.test"
	expect(t, "other host", g.Decide(r), true, 200, "")
	d := g.DecideFor(t.Context(), "GET", "/x", "admin.gate.test", http1("nofeat"), local)
	expect(t, "host rule, DecideFor", d, false, 403, CodeFeatureNotLicensed)
}
