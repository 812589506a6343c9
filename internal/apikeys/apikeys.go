// Package apikeys keeps jobhook's service credentials: bearer keys
// "jh_…" for the app's backend, each with a name and scopes, stored as a
// SHA-256 hash only, listed with their last use, and revoked at once.
//
// A key is 32 random bytes (so a fast hash cannot be brute-forced, and a
// lookup by hash needs no per-key salt), written as "jh_" and 43 base64url
// characters. Its first 10 characters are kept as its prefix, to tell
// keys apart in a list; the key itself is shown once, when created.
package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"
)

// Prefix starts every key.
const Prefix = "jh_"

// The scopes a key may carry.
const (
	// ScopeJobsRead reads the jobs of the user a request names.
	ScopeJobsRead = "jobs:read"
	// ScopeJobsWrite creates, cancels, reschedules and retries the jobs of
	// the user a request names.
	ScopeJobsWrite = "jobs:write"
)

// Scopes are every scope, in the order lists show them.
var Scopes = []string{ScopeJobsRead, ScopeJobsWrite}

// MaxNameLength caps a key's name.
const MaxNameLength = 100

// touchEvery is how often a key's last use is written: at most once a
// minute per key, so that a busy key costs one write a minute, not one a
// request.
const touchEvery = time.Minute

// Errors of Verify, Create and Revoke.
var (
	// ErrUnknownKey is a key no row has: mistyped, or never issued.
	ErrUnknownKey = errors.New("unknown API key")
	// ErrRevoked is a key that was revoked.
	ErrRevoked = errors.New("the API key was revoked")
	// ErrNotFound is an id no key has.
	ErrNotFound = errors.New("no such API key")
)

// InvalidError is a request to create a key that cannot be: a bad name or
// scope list. Field names which.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Message }

// ScopeList is a key's scopes, stored space-separated.
type ScopeList []string

// Value stores the scopes space-separated.
func (s ScopeList) Value() (driver.Value, error) { return strings.Join(s, " "), nil }

// Scan reads the scopes from a text column.
func (s *ScopeList) Scan(src any) error {
	switch v := src.(type) {
	case string:
		*s = strings.Fields(v)
	case []byte:
		*s = strings.Fields(string(v))
	case nil:
		*s = nil
	default:
		return fmt.Errorf("apikeys.ScopeList: cannot scan %T", src)
	}
	return nil
}

// Has reports whether the list holds scope.
func (s ScopeList) Has(scope string) bool { return slices.Contains(s, scope) }

// Key is a service credential as stored and listed: never the key itself.
type Key struct {
	ID         int64      `gorm:"column:id;primaryKey;autoIncrement" json:"id"`
	Name       string     `gorm:"column:name" json:"name"`
	Prefix     string     `gorm:"column:prefix" json:"prefix"`
	Hash       string     `gorm:"column:hash" json:"-"`
	Scopes     ScopeList  `gorm:"column:scopes" json:"scopes"`
	CreatedAt  time.Time  `gorm:"column:created_at;autoCreateTime:false" json:"createdAt"`
	LastUsedAt *time.Time `gorm:"column:last_used_at" json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `gorm:"column:revoked_at" json:"revokedAt,omitempty"`
}

// TableName is the keys' table.
func (Key) TableName() string { return "api_keys" }

// Store reads and writes the keys of one database.
type Store struct {
	db  *gorm.DB
	now func() time.Time
}

// New returns a Store on db; now is the clock (nil: time.Now).
func New(db *gorm.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}
}

// Create issues a key named name with scopes, and returns it with the key
// itself, which is not kept and cannot be shown again.
func (s *Store) Create(ctx context.Context, name string, scopes []string) (Key, string, error) {
	name = strings.TrimSpace(name)
	if err := checkName(name); err != nil {
		return Key{}, "", err
	}
	list, err := checkScopes(scopes)
	if err != nil {
		return Key{}, "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, "", fmt.Errorf("new API key: %w", err)
	}
	secret := Prefix + base64.RawURLEncoding.EncodeToString(raw)
	k := Key{Name: name, Prefix: secret[:10], Hash: hashOf(secret), Scopes: list, CreatedAt: s.now().UTC()}
	if err := s.db.WithContext(ctx).Create(&k).Error; err != nil {
		return Key{}, "", fmt.Errorf("store API key %q: %w", name, err)
	}
	return k, secret, nil
}

// List returns every key, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	keys := []Key{}
	if err := s.db.WithContext(ctx).Order("id").Find(&keys).Error; err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Revoke revokes a key: from now on Verify refuses it, on every server.
// Revoking a revoked key changes nothing and returns it.
func (s *Store) Revoke(ctx context.Context, id int64) (Key, error) {
	now := s.now().UTC()
	db := s.db.WithContext(ctx)
	if err := db.Model(&Key{}).Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", now).Error; err != nil {
		return Key{}, fmt.Errorf("revoke API key %d: %w", id, err)
	}
	var k Key
	err := db.Where("id = ?", id).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Key{}, ErrNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("read API key %d: %w", id, err)
	}
	return k, nil
}

// Verify returns the key secret is, reading the database each time (so a
// revoke takes effect at once), and notes its use (at most once a
// minute). A key no row has is ErrUnknownKey; a revoked one ErrRevoked.
func (s *Store) Verify(ctx context.Context, secret string) (Key, error) {
	if !strings.HasPrefix(secret, Prefix) {
		return Key{}, ErrUnknownKey
	}
	var k Key
	db := s.db.WithContext(ctx)
	err := db.Where("hash = ?", hashOf(secret)).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Key{}, ErrUnknownKey
	}
	if err != nil {
		return Key{}, fmt.Errorf("look up API key: %w", err)
	}
	if k.RevokedAt != nil {
		return k, ErrRevoked
	}
	now := s.now().UTC()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= touchEvery {
		// Best effort: a failed note of the last use does not refuse the
		// request.
		if db.Model(&Key{}).Where("id = ?", k.ID).Update("last_used_at", now).Error == nil {
			k.LastUsedAt = &now
		}
	}
	return k, nil
}

func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLength || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return &InvalidError{Field: "name", Message: fmt.Sprintf("name must be 1 to %d bytes of printable text", MaxNameLength)}
	}
	return nil
}

// checkScopes returns scopes without repeats, in the order of Scopes.
func checkScopes(scopes []string) (ScopeList, error) {
	if len(scopes) == 0 {
		return nil, &InvalidError{Field: "scopes", Message: "scopes must name at least one of " + strings.Join(Scopes, ", ")}
	}
	var out ScopeList
	for _, want := range Scopes {
		if slices.Contains(scopes, want) {
			out = append(out, want)
		}
	}
	for _, sc := range scopes {
		if !slices.Contains(Scopes, sc) {
			return nil, &InvalidError{Field: "scopes", Message: fmt.Sprintf("unknown scope %q; the scopes are %s", sc, strings.Join(Scopes, ", "))}
		}
	}
	return out, nil
}
