// Package secretfields finds, seals, opens and redacts the secret fields of
// a JSON payload, and scrubs secret values from text. It is pure: no I/O,
// no state, no keys. Sealing and opening go through a Sealer the caller
// supplies (jobhook's AES keyring is one).
//
// # Paths
//
// A payload's secret fields are named by paths of two forms:
//
//	name             the top-level field "name": its whole value, whatever
//	                 its JSON type, is secret ("accessToken"; or "targets",
//	                 which makes the whole array one secret)
//	list[].name      the field "name" of every object in the top-level
//	                 array "list" ("targets[].accessToken")
//
// A name is a JSON object key, non-empty, without '.', '[' or ']'. Keys
// match as encoding/json matches them to struct fields, that is without
// regard to case ("accessToken" also covers "AccessToken" and
// "ACCESSTOKEN"), so a payload cannot slip a secret past the sealing under
// a key its reader would still decode. A null value, or a null array or
// array element, holds no secret and is left as it is. For a list[].name
// path, a "list" that is present and not null must be an array whose
// elements are objects or null; otherwise the walk fails with a
// *ShapeError. Deeper paths are not supported: mark the enclosing
// top-level field instead.
//
// # Sealed values
//
// A sealed value takes the place of the secret value in the payload as
// {"$secret":"<sealed>"} (see Key). It is sealed with additional data that
// binds it to the payload's owner and type and to its location (see
// Binding), so it cannot be moved to another payload or field.
package secretfields

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// path is one parsed path: field is a top-level key; elem, when set, is
// the key inside each object of the array at field.
type path struct {
	field string
	elem  string
}

func (p path) String() string {
	if p.elem == "" {
		return p.field
	}
	return p.field + "[]." + p.elem
}

// parsePath parses "name" or "list[].name".
func parsePath(s string) (path, error) {
	field, elem, isList := strings.Cut(s, "[].")
	if err := checkName(field); err != nil {
		return path{}, fmt.Errorf("secret field path %q: %w", s, err)
	}
	if !isList {
		return path{field: field}, nil
	}
	if err := checkName(elem); err != nil {
		return path{}, fmt.Errorf("secret field path %q: %w", s, err)
	}
	return path{field: field, elem: elem}, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty field name")
	}
	if strings.ContainsAny(name, ".[]") {
		return errors.New(`want "name" or "list[].name" (a name holds no '.', '[' or ']')`)
	}
	return nil
}

// Fields is a parsed set of secret field paths, such as a job type
// declares. The zero value holds none: walking it visits nothing.
type Fields struct {
	paths []path
}

// Parse parses secret field paths (the syntax is in the package doc),
// dropping repeats. An error names the first path that is not valid.
func Parse(paths []string) (Fields, error) {
	var f Fields
	for _, s := range paths {
		p, err := parsePath(s)
		if err != nil {
			return Fields{}, err
		}
		if !slices.Contains(f.paths, p) {
			f.paths = append(f.paths, p)
		}
	}
	return f, nil
}

// Empty reports whether f holds no path.
func (f Fields) Empty() bool { return len(f.paths) == 0 }

// String lists the paths, comma-separated, as Parse reads them.
func (f Fields) String() string {
	s := make([]string, len(f.paths))
	for i, p := range f.paths {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// ShapeError is returned by a walk when the container of a list[].name
// path is not an array of objects (or null).
type ShapeError struct {
	// Loc is where the payload has the wrong shape: "targets", or
	// "targets[1]" for an element that is not an object.
	Loc string
	// Want says what Loc should hold: "an array of objects", "an object".
	Want string
}

func (e *ShapeError) Error() string { return e.Loc + " must be " + e.Want }

// VisitFunc is called by Walk with the concrete location of a secret value
// (such as "targets[1].accessToken", with the keys as they appear in the
// payload) and its raw JSON. It returns the value to put in its place, or
// nil to leave it.
type VisitFunc func(loc string, v json.RawMessage) (json.RawMessage, error)

// Walk calls visit for every non-null value at a path of f in payload, a
// JSON object, in a fixed order (keys sorted), and returns the payload with
// the values visit replaced: payload itself when none was, else the
// payload re-encoded (without escaping <, > and &). An empty or null
// payload is returned as it is. A key that is itself a secret is visited
// whole, even when it is also a list[].name container. Errors: "payload is
// not a JSON object", a *ShapeError, or visit's error as it is.
func (f Fields) Walk(payload []byte, visit VisitFunc) ([]byte, error) {
	if f.Empty() || len(payload) == 0 || isJSONNull(payload) {
		return payload, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil || obj == nil {
		return nil, errors.New("payload is not a JSON object")
	}
	changed := false
	for _, key := range sortedKeys(obj) {
		v := obj[key]
		if isJSONNull(v) {
			continue
		}
		if f.matchesTopLevel(key) {
			nv, err := visit(key, v)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				obj[key], changed = nv, true
			}
			continue
		}
		elems := f.elemNames(key)
		if len(elems) == 0 {
			continue
		}
		nv, err := walkList(key, v, elems, visit)
		if err != nil {
			return nil, err
		}
		if nv != nil {
			obj[key], changed = nv, true
		}
	}
	if !changed {
		return payload, nil
	}
	return marshalJSON(obj)
}

// walkList visits the elem keys of every object in the array v. It returns
// the new array, or nil when nothing changed.
func walkList(key string, v json.RawMessage, elems []string, visit VisitFunc) (json.RawMessage, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, &ShapeError{Loc: key, Want: "an array of objects"}
	}
	changed := false
	for i, e := range list {
		if isJSONNull(e) {
			continue
		}
		var item map[string]json.RawMessage
		if err := json.Unmarshal(e, &item); err != nil || item == nil {
			return nil, &ShapeError{Loc: key + "[" + strconv.Itoa(i) + "]", Want: "an object"}
		}
		itemChanged := false
		for _, k := range sortedKeys(item) {
			if isJSONNull(item[k]) || !slices.ContainsFunc(elems, func(n string) bool { return strings.EqualFold(n, k) }) {
				continue
			}
			nv, err := visit(key+"["+strconv.Itoa(i)+"]."+k, item[k])
			if err != nil {
				return nil, err
			}
			if nv != nil {
				item[k], itemChanged = nv, true
			}
		}
		if itemChanged {
			raw, err := marshalJSON(item)
			if err != nil {
				return nil, err
			}
			list[i], changed = raw, true
		}
	}
	if !changed {
		return nil, nil
	}
	return marshalJSON(list)
}

func (f Fields) matchesTopLevel(key string) bool {
	return slices.ContainsFunc(f.paths, func(p path) bool { return p.elem == "" && strings.EqualFold(p.field, key) })
}

func (f Fields) elemNames(key string) []string {
	var out []string
	for _, p := range f.paths {
		if p.elem != "" && strings.EqualFold(p.field, key) {
			out = append(out, p.elem)
		}
	}
	return out
}

// Values returns every string inside the values at the paths of f in
// payload (for a sealed value, the sealed string), to scrub from text
// derived from the payload. Shapes it cannot read are skipped.
func (f Fields) Values(payload []byte) []string {
	var out []string
	_, _ = f.Walk(payload, func(_ string, v json.RawMessage) (json.RawMessage, error) {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var x any
		if dec.Decode(&x) == nil {
			out = appendStrings(out, x)
		}
		return nil, nil
	})
	return out
}

func appendStrings(out []string, x any) []string {
	switch x := x.(type) {
	case string:
		if x != "" {
			out = append(out, x)
		}
	case []any:
		for _, e := range x {
			out = appendStrings(out, e)
		}
	case map[string]any:
		for _, e := range x {
			out = appendStrings(out, e)
		}
	}
	return out
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func isJSONNull(v []byte) bool { return string(bytes.TrimSpace(v)) == "null" }

// marshalJSON encodes v without escaping <, > and &.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
