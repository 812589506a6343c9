package secretfields_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/jobs/secretfields"
)

func mustParse(t *testing.T, paths ...string) secretfields.Fields {
	t.Helper()
	f, err := secretfields.Parse(paths)
	require.NoError(t, err)
	return f
}

func TestParse(t *testing.T) {
	f := mustParse(t, "accessToken", "targets[].accessToken", "accessToken", "targets[].accessToken")
	require.False(t, f.Empty())
	require.Equal(t, "accessToken,targets[].accessToken", f.String(), "repeats are dropped")
	require.True(t, mustParse(t).Empty())
	require.True(t, secretfields.Fields{}.Empty())

	for _, bad := range []string{"", "a.b", "a[].b.c", "a[]", "[].x", "a[0].b", "a[].", "a[][].b", "a]", "x[].y[]"} {
		_, err := secretfields.Parse([]string{"ok", bad})
		require.Error(t, err, "%q", bad)
		require.Contains(t, err.Error(), fmt.Sprintf("secret field path %q", bad))
	}
}

// TestWalk: which values a walk visits, at which locations, and what it
// returns.
func TestWalk(t *testing.T) {
	fields := mustParse(t, "token", "targets[].key")
	for _, tc := range []struct {
		name    string
		payload string
		visits  []string // loc=value
		err     string
	}{
		{name: "top level and list", payload: `{"token":"t","targets":[{"key":"a","x":1},null,{"KEY":{"n":[1]}}],"other":"o"}`,
			visits: []string{`targets[0].key="a"`, `targets[2].KEY={"n":[1]}`, `token="t"`}},
		{name: "keys in any case, visited as they are spelt", payload: `{"TOKEN":1,"Token":2,"tarGets":[{"Key":3}]}`,
			visits: []string{`TOKEN=1`, `Token=2`, `tarGets[0].Key=3`}},
		{name: "nulls hold no secret", payload: `{"token":null,"targets":null}`},
		{name: "null element and null value", payload: `{"targets":[null,{"key":null}]}`},
		{name: "no such keys", payload: `{"a":1}`},
		{name: "empty", payload: ``},
		{name: "null payload", payload: `null`},
		{name: "container not an array", payload: `{"targets":{"key":"a"}}`, err: "targets must be an array of objects"},
		{name: "element not an object", payload: `{"targets":[{"key":"a"},"b"]}`, err: "targets[1] must be an object"},
		{name: "not an object", payload: `[1]`, err: "payload is not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var visits []string
			out, err := fields.Walk([]byte(tc.payload), func(loc string, v json.RawMessage) (json.RawMessage, error) {
				visits = append(visits, loc+"="+string(v))
				return nil, nil
			})
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.visits, visits)
			require.Equal(t, tc.payload, string(out), "nothing replaced: the payload as it was")
		})
	}

	var se *secretfields.ShapeError
	_, err := fields.Walk([]byte(`{"targets":[1]}`), func(string, json.RawMessage) (json.RawMessage, error) { return nil, nil })
	require.True(t, errors.As(err, &se))
	require.Equal(t, secretfields.ShapeError{Loc: "targets[0]", Want: "an object"}, *se)

	// A field that is itself secret is visited whole, list or not.
	whole := mustParse(t, "targets", "targets[].key")
	var locs []string
	out, err := whole.Walk([]byte(`{"targets":"<not a list>","x":"<&>"}`), func(loc string, v json.RawMessage) (json.RawMessage, error) {
		locs = append(locs, loc)
		return json.RawMessage(`"<R&D>"`), nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"targets"}, locs)
	require.Equal(t, `{"targets":"<R&D>","x":"<&>"}`, string(out), "re-encoded without HTML escapes")

	boom := errors.New("boom")
	_, err = fields.Walk([]byte(`{"token":"t"}`), func(string, json.RawMessage) (json.RawMessage, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
}

func TestValues(t *testing.T) {
	fields := mustParse(t, "token", "targets[].key", "nested")
	got := fields.Values([]byte(`{"token":"t1","targets":[{"key":{"$secret":"v1.a.sealed"}},{"key":7},{"key":""}],` +
		`"nested":{"a":["s2",{"b":"s3"}],"n":1.5,"f":true},"other":"not secret"}`))
	require.ElementsMatch(t, []string{"v1.a.sealed", "s2", "s3", "t1"}, got)
	require.Empty(t, fields.Values([]byte(`{"targets":"bad shape"}`)))
	require.Empty(t, fields.Values([]byte(`not json`)))
	require.Empty(t, secretfields.Fields{}.Values([]byte(`{"token":"t"}`)))
}

func TestRedact(t *testing.T) {
	fields := mustParse(t, "token", "targets[].key")
	for _, tc := range []struct{ name, payload, want string }{
		{"declared fields, sealed or not", `{"token":{"$secret":"v1.a.x"},"targets":[{"key":"plain","id":1},null],"keep":"<me>"}`,
			`{"token":"[redacted]","targets":[{"key":"[redacted]","id":1},null],"keep":"<me>"}`},
		{"sealed values anywhere", `{"keep":"me","old":{"$secret":"v1.a.AAAA"},"list":[{"$secret":"v1.a.BBBB"}],"deep":{"x":[{"y":{"$secret":"s"}}]}}`,
			`{"keep":"me","old":"[redacted]","list":["[redacted]"],"deep":{"x":[{"y":"[redacted]"}]}}`},
		{"an object with more keys than $secret is not sealed", `{"o":{"$secret":"s","k":1}}`, `{"o":{"$secret":"s","k":1}}`},
		{"a container of the wrong shape is hidden whole", `{"token":"t","targets":{"key":"k"}}`, `{"token":"[redacted]","targets":"[redacted]"}`},
		{"unreadable", `[1,2]`, `"[redacted]"`},
		{"empty", ``, ``},
		{"null", `null`, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := fields.Redact([]byte(tc.payload))
			if tc.want == "" || tc.want == "null" || tc.want == `"[redacted]"` {
				require.Equal(t, tc.want, string(out))
				return
			}
			require.JSONEq(t, tc.want, string(out))
		})
	}
	require.Equal(t, `{"old":"[redacted]"}`, string(secretfields.Fields{}.Redact([]byte(`{"old":{"$secret":"v1"}}`))),
		"no declared fields: sealed values are still hidden")
	require.Equal(t, `"[redacted]"`, string(secretfields.RedactAll([]byte(`{"a":1}`))))
	require.Equal(t, `null`, string(secretfields.RedactAll([]byte(`null`))))
	require.Empty(t, secretfields.RedactAll(nil))
}

// fakeSealer seals by base64 (no plaintext in the output), binding the aad,
// and records every aad it is given.
type fakeSealer struct {
	aads    []string
	sealErr error
	openErr error
	plain   []byte // when set, Open returns it
}

func (s *fakeSealer) Seal(plaintext, aad []byte) (string, error) {
	s.aads = append(s.aads, string(aad))
	if s.sealErr != nil {
		return "", s.sealErr
	}
	return "fake." + hexOf(aad) + "." + b64(plaintext), nil
}

func (s *fakeSealer) Open(sealed string, aad []byte) ([]byte, error) {
	s.aads = append(s.aads, string(aad))
	if s.openErr != nil {
		return nil, s.openErr
	}
	parts := strings.Split(sealed, ".")
	if len(parts) != 3 || parts[0] != "fake" {
		return nil, errors.New("fake: malformed")
	}
	if parts[1] != hexOf(aad) {
		return nil, fmt.Errorf("fake: %w", secretfields.ErrNotAuthentic)
	}
	if s.plain != nil {
		return s.plain, nil
	}
	return base64.RawURLEncoding.DecodeString(parts[2])
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
func b64(b []byte) string   { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

var _ secretfields.Sealer = (*fakeSealer)(nil)

// TestSealAndOpen: sealing replaces each secret with a wrapper bound to its
// owner, type and location; opening gives back the payload; a value moved,
// altered or opened for another job names its field.
func TestSealAndOpen(t *testing.T) {
	fields := mustParse(t, "token", "targets[].key")
	bind := secretfields.Binding{UserID: "u1", JobType: "social"}
	payload := []byte(`{"token":"top-secret","caption":"<hi>","targets":[{"key":{ "n" : [1, "s"] },"id":"a"},null,{"KEY":"k2"}]}`)

	s := &fakeSealer{}
	sealed, err := fields.Seal(s, bind, payload)
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "top-secret")
	require.NotContains(t, string(sealed), "k2")
	require.Contains(t, string(sealed), `"caption":"<hi>"`)
	require.Equal(t, 3, strings.Count(string(sealed), `{"`+secretfields.Key+`":"fake.`))
	// The additional data is part of every stored value: it never changes.
	require.Equal(t, []string{
		`["jobhook/job-payload/v1","u1","social","targets[0].key"]`,
		`["jobhook/job-payload/v1","u1","social","targets[2].KEY"]`,
		`["jobhook/job-payload/v1","u1","social","token"]`,
	}, s.aads)
	require.Equal(t, `{"n":[1,"s"]}`, string(unb64(t, strings.Split(string(sealedValue(t, sealed, "targets", 0, "key")), ".")[2])),
		"the plaintext sealed is the compacted JSON value")

	opened, unsealed, err := fields.Open(s, bind, sealed)
	require.NoError(t, err)
	require.Empty(t, unsealed)
	require.JSONEq(t, string(payload), string(opened))

	// Opened for another user or type, or moved to another field.
	for _, other := range []secretfields.Binding{{UserID: "u2", JobType: "social"}, {UserID: "u1", JobType: "other"}} {
		_, _, err := fields.Open(s, other, sealed)
		require.ErrorIs(t, err, secretfields.ErrNotAuthentic)
		require.EqualError(t, err, `secret payload field "targets[0].key" cannot be decrypted: it was altered or does not belong to this job and field (fake: sealed value failed authentication)`)
	}
	moved := strings.Replace(string(sealed), string(sealedValue(t, sealed, "targets", 2, "KEY")), string(sealedValue(t, sealed, "token", -1, "")), 1)
	_, _, err = fields.Open(s, bind, []byte(moved))
	require.ErrorContains(t, err, `secret payload field "targets[2].KEY" cannot be decrypted: it was altered or does not belong to this job and field`)
	require.NotContains(t, err.Error(), "fake.", "the error never holds the sealed value")

	// Other failures of the Sealer, and a plaintext that is not JSON.
	_, _, err = fields.Open(&fakeSealer{openErr: errors.New("unknown key id \"a\"")}, bind, sealed)
	require.EqualError(t, err, `secret payload field "targets[0].key" cannot be decrypted: unknown key id "a"`)
	_, _, err = fields.Open(&fakeSealer{plain: []byte("{nope")}, bind, sealed)
	require.EqualError(t, err, `secret payload field "targets[0].key" cannot be decrypted: not a JSON value`)

	// Values stored unsealed are passed on and reported, also on failure.
	opened, unsealed, err = fields.Open(s, bind, []byte(`{"token":"plain","targets":[{"key":"p2"}]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"targets[0].key", "token"}, unsealed)
	require.Equal(t, `{"token":"plain","targets":[{"key":"p2"}]}`, string(opened))
	_, unsealed, err = fields.Open(&fakeSealer{openErr: errors.New("no key")}, bind, []byte(`{"targets":[{"key":"p2"}],"token":{"$secret":"fake.x.y"}}`))
	require.Error(t, err)
	require.Equal(t, []string{"targets[0].key"}, unsealed)

	// A client-sent wrapper is sealed like any value.
	sealed2, err := fields.Seal(s, bind, []byte(`{"token":{"$secret":"fake.00.AA"}}`))
	require.NoError(t, err)
	opened, _, err = fields.Open(s, bind, sealed2)
	require.NoError(t, err)
	require.Equal(t, `{"token":{"$secret":"fake.00.AA"}}`, string(opened))

	// Errors of the Sealer name the field; shapes are *ShapeError.
	_, err = fields.Seal(&fakeSealer{sealErr: errors.New("empty keyring")}, bind, payload)
	require.EqualError(t, err, `seal secret payload field "targets[0].key": empty keyring`)
	_, err = fields.Seal(s, bind, []byte(`{"targets":"top-secret"}`))
	var se *secretfields.ShapeError
	require.True(t, errors.As(err, &se))
	require.Equal(t, "targets", se.Loc)
	require.NotContains(t, err.Error(), "top-secret")
	_, err = fields.Seal(nil, bind, payload)
	require.Error(t, err)

	// No fields: nothing to seal or open, the payload as it is.
	out, err := secretfields.Fields{}.Seal(nil, bind, payload)
	require.NoError(t, err)
	require.Equal(t, string(payload), string(out))
}

// sealedValue returns the sealed string at field (or field[i].key).
func sealedValue(t *testing.T, payload []byte, field string, i int, key string) []byte {
	t.Helper()
	var obj map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(payload, &obj))
	v := obj[field]
	if i >= 0 {
		var list []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(v, &list))
		v = list[i][key]
	}
	var w map[string]string
	require.NoError(t, json.Unmarshal(v, &w))
	return []byte(w[secretfields.Key])
}
