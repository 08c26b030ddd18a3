package jwtorg

import (
	"net/http"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	for _, c := range []struct {
		name   string
		hdr    http.Header
		cookie string
		want   string
		ok     bool
	}{
		{"bearer", http.Header{"Authorization": {"Bearer abc.def.ghi"}}, "", "abc.def.ghi", true},
		{"scheme case", http.Header{"Authorization": {"bEARER abc"}}, "", "abc", true},
		{"several spaces", http.Header{"Authorization": {"Bearer   abc"}}, "", "abc", true},
		{"no header", http.Header{}, "", "", false},
		{"no token", http.Header{"Authorization": {"Bearer"}}, "", "", false},
		{"blank token", http.Header{"Authorization": {"Bearer  "}}, "", "", false},
		{"token with a space", http.Header{"Authorization": {"Bearer abc def"}}, "", "abc def", true}, // Org refuses it
		{"tab for space", http.Header{"Authorization": {"Bearer\tabc"}}, "", "", false},
		{"other scheme", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, "", "", false},
		{"scheme prefix", http.Header{"Authorization": {"Bearerabc"}}, "", "", false},
		{"two headers", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", "", false},
		{"cookie", http.Header{"Cookie": {"theme=dark; session=abc.def.ghi; x=y"}}, "session", "abc.def.ghi", true},
		{"quoted cookie", http.Header{"Cookie": {`session="abc"`}}, "session", "abc", true},
		{"cookie not asked for", http.Header{"Cookie": {"session=abc"}}, "", "", false},
		{"cookie absent", http.Header{"Cookie": {"other=abc"}}, "session", "", false},
		{"cookie name prefix", http.Header{"Cookie": {"session2=abc; xsession=def"}}, "session", "", false},
		{"empty cookie", http.Header{"Cookie": {"session="}}, "session", "", false},
		{"cookie twice, same value", http.Header{"Cookie": {"session=abc", "session=abc"}}, "session", "abc", true},
		{"cookie twice, other values", http.Header{"Cookie": {"session=abc; session=def"}}, "session", "", false},
		{"header before cookie", http.Header{"Authorization": {"Bearer abc"}, "Cookie": {"session=def"}}, "session", "abc", true},
		{"cookie under another scheme", http.Header{"Authorization": {"Basic x"}, "Cookie": {"session=def"}}, "session", "def", true},
		{"no cookie fallback from an empty bearer", http.Header{"Authorization": {"Bearer"}, "Cookie": {"session=def"}}, "session", "", false},
	} {
		got, ok := TokenFrom(c.hdr, c.cookie)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: TokenFrom = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if tok, ok := Bearer("Bearer abc"); tok != "abc" || !ok {
		t.Errorf("Bearer = %q, %v", tok, ok)
	}
}

func TestTokenFromAllocs(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://example.com/", nil)
	r.Header.Set("Authorization", "Bearer abc.def.ghi")
	r.Header.Set("Cookie", "a=b; session=jkl.mno.pqr")
	if a := testing.AllocsPerRun(100, func() { _, _ = TokenFrom(r.Header, "session") }); a != 0 {
		t.Errorf("TokenFrom (Authorization) allocates %v times", a)
	}
	r.Header.Del("Authorization")
	if a := testing.AllocsPerRun(100, func() { _, _ = TokenFrom(r.Header, "session") }); a != 0 {
		t.Errorf("TokenFrom (cookie) allocates %v times", a)
	}
}
