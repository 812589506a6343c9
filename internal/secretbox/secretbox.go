// Package secretbox seals small secrets (such as the access tokens in job
// payloads) with AES-256-GCM under a keyring of named keys, so that keys
// can rotate: the first key seals, every key opens.
//
// A keyring is configured as one string (JOBS_ENCRYPTION_KEY):
//
//	kid:base64key[,kid:base64key...]
//
// where each key is 32 random bytes in standard or URL-safe base64 (padded
// or not) and each kid is 1–32 characters of [A-Za-z0-9_-]. To rotate, put
// a new key first ("new:…,old:…"): new values are sealed with it and old
// ones still open. Drop the old key only when nothing sealed with it is
// left.
//
// A sealed value is the compact string
//
//	v1.<kid>.<base64url(nonce | ciphertext | tag)>
//
// (base64url without padding, a 12-byte random nonce). The additional
// authenticated data passed to Seal must be passed again to Open: it binds
// the value to its place (for example a job's user, type and field), so a
// sealed value copied elsewhere does not open.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jobhook/jobhook/jobs/secretfields"
)

// KeySize is the size of a key: AES-256.
const KeySize = 32

// MaxKeyIDLength is the longest key id accepted.
const MaxKeyIDLength = 32

// version is the prefix of every sealed value of this format.
const version = "v1"

const nonceSize = 12

// Errors returned by Open. They never contain key material or the sealed
// value.
var (
	// ErrMalformed: the value is not a sealed value of a known format.
	ErrMalformed = errors.New("secretbox: malformed sealed value")
	// ErrUnknownKey: the value was sealed with a key the keyring lacks.
	ErrUnknownKey = errors.New("secretbox: unknown key id")
	// ErrAuth: the value was altered, or sealed with other additional data
	// (moved from another field), or under another key with the same id.
	// It also matches secretfields.ErrNotAuthentic (errors.Is), which is
	// how the engine, knowing no keyring, tells it from the others.
	ErrAuth error = authError{}
)

// authError is the type of ErrAuth.
type authError struct{}

func (authError) Error() string { return "secretbox: message authentication failed" }

// Is reports whether target is secretfields.ErrNotAuthentic.
func (authError) Is(target error) bool { return target == secretfields.ErrNotAuthentic }

// A Keyring is the engine's Sealer.
var _ secretfields.Sealer = (*Keyring)(nil)

// Keyring holds named AES-256-GCM keys. It keeps no raw key bytes (only
// the expanded ciphers) and prints without them. It is immutable and safe
// for concurrent use.
type Keyring struct {
	primary string
	ids     []string // in configuration order, primary first
	aeads   map[string]cipher.AEAD
}

// ParseKeyring parses a JOBS_ENCRYPTION_KEY value: comma-separated
// kid:base64key entries, the first of which seals. Spaces around entries
// are ignored. Errors name the entry by position (and by kid when the kid
// is well formed) and never repeat key material.
func ParseKeyring(spec string) (*Keyring, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("secretbox: no keys: want kid:base64key[,kid:base64key...]")
	}
	kr := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, entry := range strings.Split(spec, ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("secretbox: key entry %d is empty", n)
		}
		kid, b64, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("secretbox: key entry %d is not kid:base64key", n)
		}
		kid, b64 = strings.TrimSpace(kid), strings.TrimSpace(b64)
		if err := checkKeyID(kid); err != nil {
			// The "kid" may be key material pasted in the wrong place:
			// do not repeat it.
			return nil, fmt.Errorf("secretbox: key entry %d: %w", n, err)
		}
		if _, dup := kr.aeads[kid]; dup {
			return nil, fmt.Errorf("secretbox: key entry %d: key id %q appears twice", n, kid)
		}
		key, err := decodeKey(b64)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key entry %d (kid %q): %w", n, kid, err)
		}
		aead, err := newAEAD(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key entry %d (kid %q): %w", n, kid, err)
		}
		kr.aeads[kid] = aead
		kr.ids = append(kr.ids, kid)
	}
	kr.primary = kr.ids[0]
	return kr, nil
}

func checkKeyID(kid string) error {
	if kid == "" {
		return errors.New("empty key id")
	}
	if len(kid) > MaxKeyIDLength {
		return fmt.Errorf("key id longer than %d characters", MaxKeyIDLength)
	}
	for i := 0; i < len(kid); i++ {
		if !isKeyIDByte(kid[i]) {
			return errors.New("key id may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

func isKeyIDByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'
}

// decodeKey accepts standard and URL-safe base64, padded or not.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty key")
	}
	var (
		key []byte
		err error
	)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err = enc.Strict().DecodeString(s)
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("key is not valid base64 (standard or URL-safe)")
	}
	if len(key) != KeySize {
		n := len(key)
		clear(key)
		return nil, fmt.Errorf("key is %d bytes, want %d (AES-256)", n, KeySize)
	}
	return key, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Primary returns the id of the key that seals.
func (k *Keyring) Primary() string { return k.primary }

// KeyIDs returns the ids of every key, the primary first.
func (k *Keyring) KeyIDs() []string { return append([]string(nil), k.ids...) }

// String describes the keyring by its key ids only.
func (k Keyring) String() string {
	return fmt.Sprintf("secretbox.Keyring{primary: %q, keys: %q}", k.primary, k.ids)
}

// GoString is String, so %#v does not print the ciphers either.
func (k Keyring) GoString() string { return k.String() }

// LogValue logs the key ids only.
func (k Keyring) LogValue() slog.Value {
	return slog.GroupValue(slog.String("primary", k.primary), slog.Any("keys", k.ids))
}

// header is the sealed value's prefix, also authenticated with the data.
func header(kid string) string { return version + "." + kid + "." }

// Seal encrypts plaintext under the primary key, authenticating aad with
// it, and returns v1.<kid>.<base64url(nonce|ciphertext)>.
func (k *Keyring) Seal(plaintext, aad []byte) (string, error) {
	if k == nil || k.primary == "" {
		return "", errors.New("secretbox: seal with an empty keyring")
	}
	aead := k.aeads[k.primary]
	nonce := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("secretbox: nonce: %w", err)
	}
	h := header(k.primary)
	out := aead.Seal(nonce, nonce, plaintext, additional(h, aad))
	return h + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value made by Seal with the same aad. It fails with
// ErrMalformed, ErrUnknownKey or ErrAuth (wrapped, naming the key id at
// most).
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	if k == nil {
		return nil, errors.New("secretbox: open with an empty keyring")
	}
	ver, rest, ok := strings.Cut(sealed, ".")
	if !ok || ver != version {
		return nil, ErrMalformed
	}
	kid, body, ok := strings.Cut(rest, ".")
	if !ok || checkKeyID(kid) != nil {
		return nil, ErrMalformed
	}
	aead, ok := k.aeads[kid]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) < nonceSize+aead.Overhead() {
		return nil, ErrMalformed
	}
	plain, err := aead.Open(nil, raw[:nonceSize], raw[nonceSize:], additional(header(kid), aad))
	if err != nil {
		return nil, fmt.Errorf("%w (key id %q)", ErrAuth, kid)
	}
	return plain, nil
}

// additional is the data GCM authenticates: the header (which ends with a
// dot and holds no other dot after the version) followed by the caller's
// aad, so the pair is unambiguous.
func additional(h string, aad []byte) []byte {
	out := make([]byte, 0, len(h)+len(aad))
	out = append(out, h...)
	return append(out, aad...)
}

// KeyID reports the key id a sealed value names, without opening it.
func KeyID(sealed string) (string, bool) {
	ver, rest, ok := strings.Cut(sealed, ".")
	if !ok || ver != version {
		return "", false
	}
	kid, _, ok := strings.Cut(rest, ".")
	if !ok || checkKeyID(kid) != nil {
		return "", false
	}
	return kid, true
}

// GenerateKey returns a new keyring entry, "kid:base64key", with a random
// 32-byte key (standard base64) and a random key id such as "k3f9a1c2e".
// Append it to JOBS_ENCRYPTION_KEY, first to make it the sealing key.
func GenerateKey() (string, error) {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("secretbox: generate key id: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secretbox: generate key: %w", err)
	}
	defer clear(key)
	return "k" + hex.EncodeToString(id[:]) + ":" + base64.StdEncoding.EncodeToString(key), nil
}
