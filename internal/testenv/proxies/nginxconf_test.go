package proxies_test

import (
	"fmt"
	"strings"
)

// directive is one nginx directive: its name, its arguments (unquoted), and
// its block, if it has one.
type directive struct {
	name  string
	args  []string
	block []*directive
}

// parseNginx parses an nginx configuration into its top-level directives.
// It knows nginx's lexical rules (comments, quotes, escapes, braces), not
// what any directive means.
func parseNginx(src string) ([]*directive, error) {
	toks, err := nginxTokens(src)
	if err != nil {
		return nil, err
	}
	dirs, rest, err := nginxBlock(toks, false)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected %q", rest[0].s)
	}
	return dirs, err
}

type nginxToken struct {
	s      string
	quoted bool // a quoted string is never punctuation
}

func nginxTokens(src string) ([]nginxToken, error) {
	var toks []nginxToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, nginxToken{s: string(c)})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				b.WriteByte(src[j])
			}
			if j == len(src) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			toks = append(toks, nginxToken{s: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}", rune(src[j])) {
				j++
			}
			toks = append(toks, nginxToken{s: src[i:j]})
			i = j
		}
	}
	return toks, nil
}

// nginxBlock reads directives until the end of the tokens, or until the
// closing brace when nested.
func nginxBlock(toks []nginxToken, nested bool) ([]*directive, []nginxToken, error) {
	var dirs []*directive
	for len(toks) > 0 {
		if !toks[0].quoted && toks[0].s == "}" {
			if !nested {
				return nil, nil, fmt.Errorf("unbalanced }")
			}
			return dirs, toks[1:], nil
		}
		d := &directive{name: toks[0].s}
		toks = toks[1:]
		for {
			if len(toks) == 0 {
				return nil, nil, fmt.Errorf("directive %s is not terminated", d.name)
			}
			t := toks[0]
			toks = toks[1:]
			if !t.quoted && t.s == ";" {
				break
			}
			if !t.quoted && t.s == "{" {
				var err error
				if d.block, toks, err = nginxBlock(toks, true); err != nil {
					return nil, nil, err
				}
				if d.block == nil {
					d.block = []*directive{}
				}
				break
			}
			d.args = append(d.args, t.s)
		}
		dirs = append(dirs, d)
	}
	if nested {
		return nil, nil, fmt.Errorf("a block is not closed")
	}
	return dirs, nil, nil
}

// all returns the directives named name in dirs, in order.
func all(dirs []*directive, name string) []*directive {
	var out []*directive
	for _, d := range dirs {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

// walk calls fn for every directive, nested ones included.
func walk(dirs []*directive, fn func(*directive)) {
	for _, d := range dirs {
		fn(d)
		walk(d.block, fn)
	}
}

// location returns the block of "location ARGS…" in dirs, or nil.
func location(dirs []*directive, args ...string) []*directive {
	for _, d := range all(dirs, "location") {
		if strings.Join(d.args, " ") == strings.Join(args, " ") {
			return d.block
		}
	}
	return nil
}

// headersSet maps each proxy_set_header name (lower case) of a block to its
// value.
func headersSet(block []*directive) map[string]string {
	out := map[string]string{}
	for _, d := range all(block, "proxy_set_header") {
		if len(d.args) == 2 {
			out[strings.ToLower(d.args[0])] = d.args[1]
		}
	}
	return out
}

// args1 returns the arguments of the only directive name in block, joined
// by spaces, or "" when there is not exactly one.
func args1(block []*directive, name string) string {
	ds := all(block, name)
	if len(ds) != 1 {
		return ""
	}
	return strings.Join(ds[0].args, " ")
}
