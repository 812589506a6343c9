package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/models"
)

// Secret payload fields
//
// A handler marks payload fields secret by implementing SecretFielder. For
// a job of such a type:
//
//   - Service.Create seals each secret value (AES-256-GCM, see
//     internal/secretbox) before the insert and stores it in its place as
//     {"$secret":"v1.<kid>.<base64url>"}; the database never holds the
//     plaintext. The sealed value is bound to the job's user, type and
//     field, so it cannot be moved to another job or field.
//   - Every job the Service returns (Create, Get, List, Cancel, Reschedule,
//     Retry) carries "[redacted]" in place of each secret value: neither
//     the plaintext nor the ciphertext.
//   - The worker opens the sealed values into a copy of the job handed to
//     the handler (the row keeps the ciphertext). A value that does not
//     open fails the job for good, with a message that names the field.
//   - The worker replaces any secret value in a handler's error text with
//     "[redacted]" before the error is stored on the job, written to its
//     attempt history or logged.
//
// Secret field paths (SecretFields) take two forms:
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
// a key the handler would still decode. A null value, or a null array or
// array element, holds no secret and is left as it is. For a list[].name
// path, a "list" that is present and not null must be an array whose
// elements are objects or null; otherwise Create refuses the payload with
// a *ValidationError naming the field. Deeper paths are not supported:
// mark the enclosing top-level field instead.
//
// A type that declares secret fields cannot be created without a keyring
// (ServiceConfig.Secrets): Create returns ErrSecretsUnconfigured and
// stores nothing. There is no plaintext fallback, in development either.

// SecretFielder is implemented by handlers whose payloads carry secrets,
// such as a social network access token. SecretFields returns the secret
// field paths, in the syntax documented above; it must return the same
// paths every time.
type SecretFielder interface {
	SecretFields() []string
}

// ErrSecretsUnconfigured is returned by Service.Create for a job type with
// secret payload fields when no encryption keyring (JOBS_ENCRYPTION_KEY)
// is configured. It is a server misconfiguration, not a bad request:
// nothing is stored.
var ErrSecretsUnconfigured = errors.New("job type has secret payload fields but no encryption key is configured (JOBS_ENCRYPTION_KEY)")

// Redacted replaces a secret value in the jobs the Service returns and in
// error texts.
const Redacted = "[redacted]"

// SecretKey is the key of the object that holds a sealed value in a stored
// payload: {"$secret":"v1.<kid>.<base64url>"}.
const SecretKey = "$secret"

// secretAADLabel versions the additional data bound to a sealed field.
const secretAADLabel = "jobhook/job-payload/v1"

var redactedJSON = json.RawMessage(strconv.Quote(Redacted))

// secretPath is one parsed SecretFields entry: field is a top-level key;
// elem, when set, is the key inside each object of the array at field.
type secretPath struct {
	field string
	elem  string
}

func (p secretPath) String() string {
	if p.elem == "" {
		return p.field
	}
	return p.field + "[]." + p.elem
}

// parseSecretPath parses "name" or "list[].name".
func parseSecretPath(s string) (secretPath, error) {
	field, elem, isList := strings.Cut(s, "[].")
	if err := checkSecretName(field); err != nil {
		return secretPath{}, fmt.Errorf("secret field path %q: %w", s, err)
	}
	if !isList {
		return secretPath{field: field}, nil
	}
	if err := checkSecretName(elem); err != nil {
		return secretPath{}, fmt.Errorf("secret field path %q: %w", s, err)
	}
	return secretPath{field: field, elem: elem}, nil
}

func checkSecretName(name string) error {
	if name == "" {
		return errors.New("empty field name")
	}
	if strings.ContainsAny(name, ".[]") {
		return errors.New(`want "name" or "list[].name" (a name holds no '.', '[' or ']')`)
	}
	return nil
}

// secretPathsOf returns the parsed, deduplicated secret paths a handler
// declares; none when it is not a SecretFielder.
func secretPathsOf(h Handler) ([]secretPath, error) {
	sf, ok := h.(SecretFielder)
	if !ok {
		return nil, nil
	}
	var out []secretPath
	for _, s := range sf.SecretFields() {
		p, err := parseSecretPath(s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// secretPathsFor returns the secret paths of a job type; none for an
// unknown type.
func secretPathsFor(reg *Registry, jobType string) ([]secretPath, error) {
	if reg == nil {
		return nil, nil
	}
	h, ok := reg.Lookup(jobType)
	if !ok {
		return nil, nil
	}
	paths, err := secretPathsOf(h)
	if err != nil {
		return nil, fmt.Errorf("job type %q: %w", jobType, err)
	}
	return paths, nil
}

// CheckSecretFields checks the secret field paths of every registered type
// and returns the types that declare any, sorted. Call it at start-up:
// when it returns types and no keyring is configured, those types cannot
// be created (ErrSecretsUnconfigured).
func CheckSecretFields(reg *Registry) ([]string, error) {
	var types []string
	for _, typ := range reg.Types() {
		paths, err := secretPathsFor(reg, typ)
		if err != nil {
			return nil, err
		}
		if len(paths) > 0 {
			types = append(types, typ)
		}
	}
	return types, nil
}

// secretAAD is the additional data a secret value is sealed with: the
// job's user and type and the value's concrete location, such as
// "targets[1].accessToken". Encoded as a JSON array, so it is unambiguous.
func secretAAD(userID, jobType, loc string) []byte {
	b, _ := json.Marshal([]string{secretAADLabel, userID, jobType, loc})
	return b
}

// shapeError: a list[].name container is not an array of objects.
type shapeError struct {
	loc  string
	want string
}

func (e *shapeError) Error() string { return e.loc + " must be " + e.want }

// secretVisitor is called with the concrete location of a secret value
// (such as "targets[1].accessToken", with the keys as they appear in the
// payload) and its raw JSON; it returns the value to put in its place, or
// nil to leave it.
type secretVisitor func(loc string, v json.RawMessage) (json.RawMessage, error)

// walkSecrets calls visit for every non-null value at a secret path of
// payload, a JSON object, and returns the payload with the values visit
// replaced (payload itself when none was). A key that is itself a secret
// is visited whole, even when it is also a list[].name container.
func walkSecrets(payload []byte, paths []secretPath, visit secretVisitor) ([]byte, error) {
	if len(paths) == 0 || len(payload) == 0 || isJSONNull(payload) {
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
		if matchesTopLevel(paths, key) {
			nv, err := visit(key, v)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				obj[key], changed = nv, true
			}
			continue
		}
		elems := elemNames(paths, key)
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
func walkList(key string, v json.RawMessage, elems []string, visit secretVisitor) (json.RawMessage, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, &shapeError{loc: key, want: "an array of objects"}
	}
	changed := false
	for i, e := range list {
		if isJSONNull(e) {
			continue
		}
		var item map[string]json.RawMessage
		if err := json.Unmarshal(e, &item); err != nil || item == nil {
			return nil, &shapeError{loc: key + "[" + strconv.Itoa(i) + "]", want: "an object"}
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

func matchesTopLevel(paths []secretPath, key string) bool {
	return slices.ContainsFunc(paths, func(p secretPath) bool { return p.elem == "" && strings.EqualFold(p.field, key) })
}

func elemNames(paths []secretPath, key string) []string {
	var out []string
	for _, p := range paths {
		if p.elem != "" && strings.EqualFold(p.field, key) {
			out = append(out, p.elem)
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

// wrapSecret returns {"$secret": sealed}.
func wrapSecret(sealed string) json.RawMessage {
	return json.RawMessage(`{"` + SecretKey + `":` + strconv.Quote(sealed) + `}`)
}

// unwrapSecret returns the sealed string of a {"$secret": "..."} value.
func unwrapSecret(v json.RawMessage) (string, bool) {
	if !bytes.Contains(v, []byte(SecretKey)) {
		return "", false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil || len(obj) != 1 {
		return "", false
	}
	raw, ok := obj[SecretKey]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// sealSecrets replaces each secret value of the request's payload with its
// sealed wrapper. It runs after Validate (which sees the plaintext) and
// before the insert.
func (s *Service) sealSecrets(req *CreateRequest) error {
	paths, err := secretPathsFor(s.cfg.Registry, req.Type)
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	if len(paths) == 0 {
		return nil
	}
	if s.cfg.Secrets == nil {
		return fmt.Errorf("create job of type %q: %w", req.Type, ErrSecretsUnconfigured)
	}
	out, err := walkSecrets(req.Payload, paths, func(loc string, v json.RawMessage) (json.RawMessage, error) {
		var plain bytes.Buffer
		if err := json.Compact(&plain, v); err != nil {
			return nil, err
		}
		sealed, err := s.cfg.Secrets.Seal(plain.Bytes(), secretAAD(req.UserID, req.Type, loc))
		clear(plain.Bytes())
		if err != nil {
			return nil, fmt.Errorf("seal secret payload field %q: %w", loc, err)
		}
		return wrapSecret(sealed), nil
	})
	var se *shapeError
	if errors.As(err, &se) {
		return invalid("invalid_payload", se.loc, "%s (it holds secret fields)", se.Error())
	}
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	req.Payload = out
	return nil
}

// scrubValidation removes the request's secret values from a validation
// error's messages (a payload validator may quote the value it refuses).
func (s *Service) scrubValidation(req CreateRequest, err error) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	paths, perr := secretPathsFor(s.cfg.Registry, req.Type)
	if perr != nil || len(paths) == 0 {
		return err
	}
	secrets := secretValues(req.Payload, paths)
	if len(secrets) == 0 {
		return err
	}
	out := &ValidationError{Code: ve.Code, Message: scrub(ve.Message, secrets)}
	for _, f := range ve.Fields {
		out.Fields = append(out.Fields, FieldError{Field: scrub(f.Field, secrets), Message: scrub(f.Message, secrets)})
	}
	return out
}

// redact replaces the secret values of a job about to be returned with
// "[redacted]", by its type's secret paths (whether the stored value is
// sealed or not), and any sealed wrapper elsewhere in the payload too (a
// type that no longer declares the field). When the payload cannot be
// read, all of it is redacted. It changes job in place and returns it.
func (s *Service) redact(job *models.Job) *models.Job {
	if job == nil {
		return nil
	}
	job.Payload = models.JSON(redactPayload(s.cfg.Registry, job.Type, job.Payload))
	return job
}

func redactPayload(reg *Registry, jobType string, payload []byte) []byte {
	if len(payload) == 0 || isJSONNull(payload) {
		return payload
	}
	paths, err := secretPathsFor(reg, jobType)
	if err != nil {
		return redactedJSON
	}
	redactValue := func(string, json.RawMessage) (json.RawMessage, error) { return redactedJSON, nil }
	out, err := walkSecrets(payload, paths, redactValue)
	var se *shapeError
	if errors.As(err, &se) {
		// A container of the wrong shape is hidden whole.
		whole := make([]secretPath, len(paths))
		for i, p := range paths {
			whole[i] = secretPath{field: p.field}
		}
		out, err = walkSecrets(payload, whole, redactValue)
	}
	if err != nil {
		return redactedJSON
	}
	if bytes.Contains(out, []byte(`"`+SecretKey+`"`)) {
		if out, err = redactWrappers(out, false); err != nil {
			return redactedJSON
		}
	}
	return out
}

// redactWrappers replaces every {"$secret": "..."} object inside v (v
// itself too when nested) with "[redacted]".
func redactWrappers(v json.RawMessage, nested bool) (json.RawMessage, error) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return v, nil
	}
	switch t[0] {
	case '{':
		if _, ok := unwrapSecret(t); ok && nested {
			return redactedJSON, nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(t, &obj); err != nil {
			return nil, err
		}
		changed := false
		for k, e := range obj {
			ne, err := redactWrappers(e, true)
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
			ne, err := redactWrappers(e, true)
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

// decryptSecrets returns the job to hand to its handler: a copy whose
// payload holds the opened secret values, or job itself when its type has
// none. A value that cannot be opened is a permanent error naming the
// field (never the value). A secret field stored unsealed (a job created
// before its type declared the field) is passed on as it is, with a
// warning.
func (w *Worker) decryptSecrets(job *models.Job) (*models.Job, error) {
	paths, err := secretPathsFor(w.cfg.Registry, job.Type)
	if err != nil {
		return job, Permanent(err)
	}
	if len(paths) == 0 {
		return job, nil
	}
	out, err := walkSecrets(job.Payload, paths, func(loc string, v json.RawMessage) (json.RawMessage, error) {
		sealed, ok := unwrapSecret(v)
		if !ok {
			w.log.Warn("secret payload field is stored unencrypted", "job_id", job.ID, "type", job.Type, "field", loc)
			return nil, nil
		}
		if w.cfg.Secrets == nil {
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: no encryption key is configured (JOBS_ENCRYPTION_KEY)", loc)
		}
		plain, err := w.cfg.Secrets.Open(sealed, secretAAD(job.UserID, job.Type, loc))
		switch {
		case errors.Is(err, secretbox.ErrAuth):
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: it was altered or does not belong to this job and field (%w)", loc, err)
		case err != nil:
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: %w", loc, err)
		case !json.Valid(plain):
			return nil, fmt.Errorf("secret payload field %q cannot be decrypted: not a JSON value", loc)
		}
		return plain, nil
	})
	var se *shapeError
	if errors.As(err, &se) {
		return job, Permanent(fmt.Errorf("payload field %s (it holds secret fields)", se.Error()))
	}
	if err != nil {
		return job, Permanent(err)
	}
	cp := *job
	cp.Payload = models.JSON(out)
	return &cp, nil
}

// secretValuesOf returns the secret strings in the payload of the job a
// handler ran with, to scrub from its error.
func (w *Worker) secretValuesOf(job *models.Job) []string {
	paths, err := secretPathsFor(w.cfg.Registry, job.Type)
	if err != nil || len(paths) == 0 {
		return nil
	}
	return secretValues(job.Payload, paths)
}

// secretValues collects every string inside the values at the secret
// paths of payload (for a wrapped value, the sealed string). Shapes it
// cannot read are skipped.
func secretValues(payload []byte, paths []secretPath) []string {
	var out []string
	_, _ = walkSecrets(payload, paths, func(_ string, v json.RawMessage) (json.RawMessage, error) {
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

// scrub replaces every occurrence of a secret in text with "[redacted]":
// as it is, and as it appears URL-query-escaped, URL-path-escaped, inside
// a JSON string or a Go-quoted string (a provider echoing a request or a
// URL); each of them in any letter case (an upstream that lower-cases what
// it echoes) and with any of its characters written as an HTML character
// reference such as &lt; &#60; &#x3C; (an error page rendered as HTML).
// Overlapping occurrences merge into one "[redacted]". Scrub before
// truncating, so a secret cut in two cannot survive.
func scrub(text string, secrets []string) string {
	if text == "" || len(secrets) == 0 {
		return text
	}
	var forms []string
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	for _, s := range secrets {
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		if b, err := json.Marshal(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		if b, err := marshalJSON(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		q := strconv.Quote(s)
		add(q[1 : len(q)-1])
	}
	var covered []bool
	cover := func(from, to int) {
		if covered == nil {
			covered = make([]bool, len(text))
		}
		for k := from; k < to; k++ {
			covered[k] = true
		}
	}
	for _, f := range forms {
		// Exact copies, byte for byte (whatever the encoding).
		for i := 0; i+len(f) <= len(text); {
			j := strings.Index(text[i:], f)
			if j < 0 {
				break
			}
			cover(i+j, i+j+len(f))
			i += j + 1
		}
		// Copies in another case or with character references.
		starts := firstBytes(f)
		for i := 0; i < len(text); i++ {
			if starts[text[i]] {
				if n := matchFold(text[i:], f); n > 0 {
					cover(i, i+n)
				}
			}
		}
	}
	if covered == nil {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !covered[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(text) && covered[i] {
			i++
		}
	}
	return b.String()
}

// firstBytes marks the bytes an occurrence of form can start with: the
// first byte of each case variant of its first rune, and '&' (a character
// reference).
func firstBytes(form string) *[256]bool {
	var t [256]bool
	t['&'] = true
	t[form[0]] = true // also when form is not UTF-8
	mark := func(r rune) {
		var buf [utf8.UTFMax]byte
		utf8.EncodeRune(buf[:], r)
		t[buf[0]] = true
	}
	first, _ := utf8.DecodeRuneInString(form)
	for _, c := range []rune{first, unicode.ToUpper(first), unicode.ToLower(first)} {
		mark(c)
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			mark(f)
			mark(unicode.ToUpper(f))
			mark(unicode.ToLower(f))
		}
	}
	return &t
}

// matchFold returns the length of the prefix of s that spells want, rune
// by rune, ignoring case (Unicode simple folding) and reading an HTML
// character reference as the character it stands for; -1 when s does not
// start with want. An empty want matches the empty prefix.
func matchFold(s, want string) int {
	if want == "" {
		return 0
	}
	w, wn := utf8.DecodeRuneInString(want)
	if s == "" {
		return -1
	}
	r, n := utf8.DecodeRuneInString(s)
	if sameFold(r, w) {
		if m := matchFold(s[n:], want[wn:]); m >= 0 {
			return n + m
		}
	}
	if r == '&' {
		if cr, cn := charRef(s); cn > 0 && sameFold(cr, w) {
			if m := matchFold(s[cn:], want[wn:]); m >= 0 {
				return cn + m
			}
		}
	}
	return -1
}

// sameFold reports whether a and b are the same rune ignoring case:
// equal under simple folding, or with the same upper or lower case (ı and
// I, which folding keeps apart, are one letter to strings.ToUpper).
func sameFold(a, b rune) bool {
	if a == b || unicode.ToUpper(a) == unicode.ToUpper(b) || unicode.ToLower(a) == unicode.ToLower(b) {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// maxCharRef bounds the length of an HTML character reference read by
// charRef ("&CounterClockwiseContourIntegral;" is the longest name).
const maxCharRef = 40

// charRef decodes the HTML character reference at the start of s (&amp;
// &#38; &#x26;, names in HTML5's table, ';' required) and returns the
// character and the reference's length; 0 when s does not start with one.
func charRef(s string) (rune, int) {
	end := strings.IndexByte(s[:min(len(s), maxCharRef)], ';')
	if end < 2 || s[0] != '&' {
		return 0, 0
	}
	ref := s[1:end]
	if num, ok := strings.CutPrefix(ref, "#"); ok {
		base := 10
		if hex, ok := strings.CutPrefix(strings.ToLower(num), "x"); ok {
			num, base = hex, 16
		}
		v, err := strconv.ParseUint(num, base, 32)
		if err != nil || num == "" || num[0] == '+' || v > unicode.MaxRune {
			return 0, 0
		}
		return rune(v), end + 1
	}
	decoded := html.UnescapeString(s[:end+1])
	r, size := utf8.DecodeRuneInString(decoded)
	if decoded == s[:end+1] || size != len(decoded) {
		return 0, 0
	}
	return r, end + 1
}
