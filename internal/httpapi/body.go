package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/strictjson"
)

// codeBodyInvalid answers a JSON request body that is not exactly one
// object of the endpoint's keys.
const codeBodyInvalid = "body_invalid"

// maxJSONBody bounds the JSON bodies of the operator endpoints.
const maxJSONBody = 16 << 10

// readJSON decodes a request's JSON body into v, a pointer to a struct
// whose json tags name every key the endpoint takes, under the rules
// licenses and events follow (strictjson): valid UTF-8, one object and
// nothing after it, no duplicate key at any depth, no key spelled in
// another case than its tag, no unknown key, and every value of its
// field's type. Anything else has two readings, or none, so it answers 400
// body_invalid naming the problem (413 past maxJSONBody) and returns
// false, before anything is done.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBodyInvalid, "could not read the body: "+err.Error())
		return false
	}
	if len(data) > maxJSONBody {
		writeError(w, http.StatusRequestEntityTooLarge, ledger.CodeTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxJSONBody))
		return false
	}
	if err := decodeStrict(data, v); err != nil {
		writeError(w, http.StatusBadRequest, codeBodyInvalid, err.Error())
		return false
	}
	return true
}

// decodeStrict is readJSON's decoding; its errors are the messages a
// client sees.
func decodeStrict(data []byte, v any) error {
	keys := jsonKeys(v)
	var unknown []byte
	err := strictjson.CheckMembers(data, keys, func(key, _ []byte) {
		if unknown == nil && !slices.Contains(keys, string(key)) {
			unknown = slices.Clone(key)
		}
	})
	if err != nil {
		return err
	}
	if unknown != nil {
		quoted := make([]string, len(keys))
		for i, k := range keys {
			quoted[i] = fmt.Sprintf("%q", k)
		}
		return fmt.Errorf("unknown key %q: the body takes %s", unknown, strings.Join(quoted, ", "))
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("key %q must be a JSON %s (got %s)", te.Field, jsonType(te.Type), te.Value)
		}
		return err
	}
	return nil
}

// jsonKeys returns the keys of the json tags of the struct v points to.
func jsonKeys(v any) []string {
	t := reflect.TypeOf(v).Elem()
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// jsonType names the JSON type a Go type decodes from.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "number"
}
