// Package strictjson checks what encoding/json lets through: invalid UTF-8,
// trailing data, duplicate keys, and keys that differ only in case from the
// ones a decoder expects (encoding/json would match them silently).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// CheckObject enforces what encoding/json does not: the input is valid
// UTF-8, one JSON object and nothing after it, no object at any depth has a
// duplicate key, and no top-level key differs only in case from a known key
// (encoding/json would silently match it). Unknown keys are allowed.
func CheckObject(data []byte, known []string) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a JSON object")
	}
	if e := walkObject(dec, known, 1); e != nil {
		return e
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 32

// walkObject consumes an object whose '{' was read; known is non-nil only
// at the top level.
func walkObject(dec *json.Decoder, known []string, depth int) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		for _, k := range known {
			if key != k && strings.EqualFold(key, k) {
				return fmt.Errorf("key %q must be spelled %q", key, k)
			}
		}
		if e := walkValue(dec, depth); e != nil {
			return e
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("not JSON: %v", err)
	}
	return nil
}

func walkValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxDepth {
		return fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	if d == '{' {
		return walkObject(dec, nil, depth+1)
	}
	for dec.More() { // array
		if e := walkValue(dec, depth+1); e != nil {
			return e
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return fmt.Errorf("not JSON: %v", err)
	}
	return nil
}
