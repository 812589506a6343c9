package secretfields

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Redacted replaces a secret value in a redacted payload and in scrubbed
// text.
const Redacted = "[redacted]"

// Key is the key of the object that holds a sealed value in a sealed
// payload: {"$secret":"<sealed>"}.
const Key = "$secret"

// aadLabel versions the additional data bound to a sealed field.
const aadLabel = "jobhook/job-payload/v1"

var redactedJSON = json.RawMessage(strconv.Quote(Redacted))

// Sealer encrypts and authenticates secret values. jobhook's AES-256-GCM
// keyring (internal/secretbox) is one.
type Sealer interface {
	// Seal encrypts plaintext, authenticating aad with it, and returns the
	// sealed value as a string.
	Seal(plaintext, aad []byte) (string, error)
	// Open returns the plaintext of a value made by Seal with the same
	// aad. A value that was altered or sealed with other additional data
	// fails with an error that matches ErrNotAuthentic (errors.Is).
	Open(sealed string, aad []byte) ([]byte, error)
}

// ErrNotAuthentic is what a Sealer's Open error matches when the value
// failed authentication: it was altered, or sealed with other additional
// data (for another owner, type or field).
var ErrNotAuthentic = errors.New("sealed value failed authentication")

// Binding is what a payload's sealed values belong to: the user who owns
// the job and its type. Each value is sealed with additional data made of
// these and its location ("targets[1].accessToken"), so it opens only at
// the same place in a payload of the same user and type.
type Binding struct {
	// UserID is the id of the user who owns the job.
	UserID string
	// JobType is the job's type.
	JobType string
}

// aad is the additional data of the value at loc. Encoded as a JSON array,
// so it is unambiguous.
func (b Binding) aad(loc string) []byte {
	out, _ := json.Marshal([]string{aadLabel, b.UserID, b.JobType, loc})
	return out
}

// Seal replaces each secret value of payload (compacted JSON, whatever its
// type) with {"$secret": sealed}, sealed by s for b. The plaintext is never
// kept. Errors: those of Walk (a *ShapeError for a container of the wrong
// shape), or of s naming the field; s must not be nil unless f is empty.
func (f Fields) Seal(s Sealer, b Binding, payload []byte) ([]byte, error) {
	if s == nil && !f.Empty() {
		return nil, errors.New("seal secret payload fields: no Sealer")
	}
	return f.Walk(payload, func(loc string, v json.RawMessage) (json.RawMessage, error) {
		var plain bytes.Buffer
		if err := json.Compact(&plain, v); err != nil {
			return nil, err
		}
		sealed, err := s.Seal(plain.Bytes(), b.aad(loc))
		clear(plain.Bytes())
		if err != nil {
			return nil, fmt.Errorf("seal secret payload field %q: %w", loc, err)
		}
		return wrap(sealed), nil
	})
}

// Open returns payload with each sealed value at the paths of f opened by
// s for b. A secret value stored unsealed (a payload sealed before its
// type declared the field) is left as it is, and its location is returned
// in unsealed, also when Open fails. A value that does not open fails Open
// with an error that names the field, never the value; for one that is not
// authentic the error says "it was altered or does not belong to this job
// and field" and matches ErrNotAuthentic. A container of the wrong shape
// is a *ShapeError.
func (f Fields) Open(s Sealer, b Binding, payload []byte) (opened []byte, unsealed []string, err error) {
	out, err := f.Walk(payload, func(loc string, v json.RawMessage) (json.RawMessage, error) {
		sealed, ok := unwrap(v)
		if !ok {
			unsealed = append(unsealed, loc)
			return nil, nil
		}
		if s == nil {
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: no Sealer", loc)
		}
		plain, err := s.Open(sealed, b.aad(loc))
		switch {
		case errors.Is(err, ErrNotAuthentic):
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: it was altered or does not belong to this job and field (%w)", loc, err)
		case err != nil:
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: %w", loc, err)
		case !json.Valid(plain):
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: not a JSON value", loc)
		}
		return plain, nil
	})
	if err != nil {
		return nil, unsealed, err
	}
	return out, unsealed, nil
}

// Redact returns payload with "[redacted]" in place of each value at the
// paths of f, sealed or not, and of every sealed value elsewhere in it too
// (a field its type no longer declares). A container of the wrong shape is
// redacted whole; a payload that cannot be read at all becomes
// "[redacted]". An empty or null payload is returned as it is.
func (f Fields) Redact(payload []byte) []byte {
	if len(payload) == 0 || isJSONNull(payload) {
		return payload
	}
	redactValue := func(string, json.RawMessage) (json.RawMessage, error) { return redactedJSON, nil }
	out, err := f.Walk(payload, redactValue)
	var se *ShapeError
	if errors.As(err, &se) {
		whole := Fields{paths: make([]path, len(f.paths))}
		for i, p := range f.paths {
			whole.paths[i] = path{field: p.field}
		}
		out, err = whole.Walk(payload, redactValue)
	}
	if err != nil {
		return redactedJSON
	}
	if bytes.Contains(out, []byte(`"`+Key+`"`)) {
		if out, err = redactSealed(out, false); err != nil {
			return redactedJSON
		}
	}
	return out
}

// RedactAll returns "[redacted]" for a payload that is not empty or null,
// which it returns as it is: for a payload whose secret fields are not
// known (a type whose paths do not parse).
func RedactAll(payload []byte) []byte {
	if len(payload) == 0 || isJSONNull(payload) {
		return payload
	}
	return redactedJSON
}

// redactSealed replaces every {"$secret": "..."} object inside v (v itself
// too when nested) with "[redacted]".
func redactSealed(v json.RawMessage, nested bool) (json.RawMessage, error) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return v, nil
	}
	switch t[0] {
	case '{':
		if _, ok := unwrap(t); ok && nested {
			return redactedJSON, nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(t, &obj); err != nil {
			return nil, err
		}
		changed := false
		for k, e := range obj {
			ne, err := redactSealed(e, true)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(ne, e) {
				obj[k], changed = ne, true
			}
		}
		if !changed {
			return v, nil
		}
		return marshalJSON(obj)
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, err
		}
		changed := false
		for i, e := range list {
			ne, err := redactSealed(e, true)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(ne, e) {
				list[i], changed = ne, true
			}
		}
		if !changed {
			return v, nil
		}
		return marshalJSON(list)
	}
	return v, nil
}

// wrap returns {"$secret": sealed}.
func wrap(sealed string) json.RawMessage {
	return json.RawMessage(`{"` + Key + `":` + strconv.Quote(sealed) + `}`)
}

// unwrap returns the sealed string of a {"$secret": "..."} value.
func unwrap(v json.RawMessage) (string, bool) {
	if !bytes.Contains(v, []byte(Key)) {
		return "", false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil || len(obj) != 1 {
		return "", false
	}
	raw, ok := obj[Key]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
