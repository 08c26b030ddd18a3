package bearer

import "testing"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, token string
		isBearer  bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		{"Bearer   abc", "abc", true},
		{"Bearer abc def", "abc def", true},
		{"Bearer", "", true},
		{"Bearer   ", "", true},
		{"Bearerx abc", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false},
		{"Basic abc", "", false},
		{"Bear abc", "", false},
		{"", "", false},
		{" Bearer abc", "", false},
	} {
		if tok, ok := Parse(c.in); tok != c.token || ok != c.isBearer {
			t.Errorf("Parse(%q) = %q, %v; want %q, %v", c.in, tok, ok, c.token, c.isBearer)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = Parse("bearer abc") }); a != 0 {
		t.Errorf("Parse allocates %v times", a)
	}
}
