package readmetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// A document marks what the test runs and what the commands print:
//
//	<!-- quickstart: any note -->               before a ```sh block to run
//	<!-- quickstart output: COMMAND -->         before the ```json or ```text
//	                                             block that every command
//	                                             containing COMMAND prints
//	<!-- quickstart output: COMMAND; as above with K1, K2 null -->
//	                                             the output above, those keys null

// command is one complete shell command of a marked block: continuation
// lines and compound commands (a while loop) joined, as bash reads them.
type command struct {
	text string
	doc  string // the document
	line int    // where it starts in doc
}

func (c command) where() string { return fmt.Sprintf("%s:%d", c.doc, c.line) }

// outputSpec is a documented output: every command containing match
// prints want (a JSON object) or text.
type outputSpec struct {
	match string
	want  *object
	text  string
	doc   string
	line  int
}

type quickstart struct {
	commands []command
	outputs  []outputSpec
}

var (
	markerRe = regexp.MustCompile(`^<!-- quickstart(?::[^>]*| output: (.+?)) -->$`)
	asAbove  = regexp.MustCompile(`^(.+?); as above with (.+) null$`)
)

// parseQuickstart reads the marked blocks of doc (named name). complete
// reports whether a piece of shell is a whole command (bash -n).
func parseQuickstart(doc, name string, complete func(string) bool) (*quickstart, error) {
	lines := strings.Split(doc, "\n")
	q := &quickstart{}
	// fence returns the body of the ``` block of one of kinds right after
	// line i, and its kind.
	fence := func(i int, kinds ...string) ([]string, string, error) {
		if i+1 >= len(lines) || !slices.Contains(kinds, strings.TrimPrefix(lines[i+1], "```")) || !strings.HasPrefix(lines[i+1], "```") {
			return nil, "", fmt.Errorf("%s:%d: the marker is not followed by a ```%s block", name, i+1, strings.Join(kinds, " or ```"))
		}
		for j := i + 2; j < len(lines); j++ {
			if lines[j] == "```" {
				return lines[i+2 : j], strings.TrimPrefix(lines[i+1], "```"), nil
			}
		}
		return nil, "", fmt.Errorf("%s:%d: the block does not end", name, i+2)
	}
	for i, l := range lines {
		m := markerRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] == "" {
			body, _, err := fence(i, "sh")
			if err != nil {
				return nil, err
			}
			cmds, err := splitCommands(body, name, i+3, complete)
			if err != nil {
				return nil, err
			}
			q.commands = append(q.commands, cmds...)
			continue
		}
		spec := outputSpec{match: m[1], doc: name, line: i + 1}
		if a := asAbove.FindStringSubmatch(m[1]); a != nil {
			if len(q.outputs) == 0 || q.outputs[len(q.outputs)-1].want == nil {
				return nil, fmt.Errorf("%s:%d: %q: no JSON output above", name, i+1, m[1])
			}
			spec.match, spec.want = a[1], q.outputs[len(q.outputs)-1].want.clone()
			for _, k := range strings.Split(a[2], ",") {
				k = strings.TrimSpace(k)
				if _, ok := spec.want.vals[k]; !ok {
					return nil, fmt.Errorf("%s:%d: the output above has no key %q", name, i+1, k)
				}
				spec.want.vals[k] = nil
			}
		} else {
			body, kind, err := fence(i, "json", "text")
			if err != nil {
				return nil, err
			}
			if kind == "text" {
				spec.text = strings.Join(body, "\n")
			} else if spec.want, err = parseObject([]byte(strings.Join(body, "\n"))); err != nil {
				return nil, fmt.Errorf("%s:%d: the documented output: %v", name, i+3, err)
			}
		}
		q.outputs = append(q.outputs, spec)
	}
	if len(q.commands) == 0 || len(q.outputs) == 0 {
		return nil, fmt.Errorf("%s marks %d commands and %d outputs for the test", name, len(q.commands), len(q.outputs))
	}
	return q, nil
}

// splitCommands cuts a block into complete commands, dropping comments and
// blank lines between them; first is the line number of body[0]. A command
// keeps its lines (a backslash continues one, a loop spans several).
func splitCommands(body []string, doc string, first int, complete func(string) bool) ([]command, error) {
	var cmds []command
	var cur []string
	start := 0
	for i, l := range body {
		if t := strings.TrimSpace(l); len(cur) == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if len(cur) == 0 {
			start = first + i
		}
		cur = append(cur, l)
		if strings.HasSuffix(l, `\`) {
			continue
		}
		if text := strings.TrimSpace(strings.Join(cur, "\n")); complete(text) {
			cmds = append(cmds, command{text: text, doc: doc, line: start})
			cur = nil
		}
	}
	if len(cur) > 0 {
		return nil, fmt.Errorf("%s:%d: the command does not end within its block", doc, start)
	}
	return cmds, nil
}

// object is a JSON object with its keys in order.
type object struct {
	keys []string
	vals map[string]any
}

func parseObject(data []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %q", data)
	}
	o := &object{vals: map[string]any{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := o.vals[k]; dup {
			return nil, fmt.Errorf("key %q twice", k)
		}
		o.keys, o.vals[k] = append(o.keys, k), v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the object: %q", data)
	}
	return o, nil
}

func (o *object) clone() *object {
	c := &object{keys: slices.Clone(o.keys), vals: map[string]any{}}
	for k, v := range o.vals {
		c.vals[k] = v
	}
	return c
}
