package qstashdev

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
)

// Environment variables read by ConfigFromEnv. They are the ones QStash's SDKs
// and the official local server use.
const (
	EnvToken             = "QSTASH_TOKEN"
	EnvCurrentSigningKey = "QSTASH_CURRENT_SIGNING_KEY"
	EnvNextSigningKey    = "QSTASH_NEXT_SIGNING_KEY"
)

// base58 is the Bitcoin alphabet, which QStash's ids and keys appear to use
// (no 0, O, I or l).
const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// randomString returns n characters drawn uniformly from base58 using
// crypto/rand.
func randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("qstashdev: read random bytes: %w", err)
		}
		for _, b := range buf {
			// 232 = 4*58: reject the tail so every character is equally likely.
			if b >= 232 {
				continue
			}
			out = append(out, base58[int(b)%len(base58)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// newID returns prefix followed by n random base58 characters, e.g.
// "msg_…". It panics only if the system's random source fails, which Go
// treats as fatal anyway.
func newID(prefix string, n int) string {
	s, err := randomString(n)
	if err != nil {
		panic(err)
	}
	return prefix + s
}

// NewSigningKey returns a fresh signing key in QStash's format: "sig_"
// followed by 28 base58 characters, like sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r.
func NewSigningKey() (string, error) {
	s, err := randomString(28)
	if err != nil {
		return "", fmt.Errorf("qstashdev: new signing key: %w", err)
	}
	return "sig_" + s, nil
}

// NewToken returns a fresh API token shaped like QStash's: standard base64
// of a JSON object {"UserID":…,"Password":…}.
func NewToken() (string, error) {
	user, err := randomString(12)
	if err != nil {
		return "", fmt.Errorf("qstashdev: new token: %w", err)
	}
	pass, err := randomString(32)
	if err != nil {
		return "", fmt.Errorf("qstashdev: new token: %w", err)
	}
	raw, err := json.Marshal(struct {
		UserID   string `json:"UserID"`
		Password string `json:"Password"`
	}{UserID: "qstashdev_" + user, Password: pass})
	if err != nil {
		return "", fmt.Errorf("qstashdev: new token: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// Keys is a set of credentials for a qstashdev server: the API token and the
// two signing keys.
type Keys struct {
	Token             string
	CurrentSigningKey string
	NextSigningKey    string
}

// GenerateKeys returns a fresh token and two distinct signing keys.
func GenerateKeys() (Keys, error) {
	var k Keys
	var err error
	if k.Token, err = NewToken(); err != nil {
		return Keys{}, err
	}
	if k.CurrentSigningKey, err = NewSigningKey(); err != nil {
		return Keys{}, err
	}
	if k.NextSigningKey, err = NewSigningKey(); err != nil {
		return Keys{}, err
	}
	return k, nil
}

// ConfigFromEnv returns a Config whose Token, CurrentSigningKey and
// NextSigningKey come from QSTASH_TOKEN, QSTASH_CURRENT_SIGNING_KEY and
// QSTASH_NEXT_SIGNING_KEY. Each one that is unset or empty is generated
// instead, and generated reports whether any was, so that a caller such as
// `jobhook qstash-dev` can print them. Other Config fields are left zero
// (defaults).
func ConfigFromEnv() (cfg Config, generated bool, err error) {
	return configFromLookup(os.Getenv)
}

func configFromLookup(getenv func(string) string) (Config, bool, error) {
	var cfg Config
	generated := false
	fill := func(dst *string, name string, gen func() (string, error)) error {
		if v := getenv(name); v != "" {
			*dst = v
			return nil
		}
		v, err := gen()
		if err != nil {
			return fmt.Errorf("generate %s: %w", name, err)
		}
		*dst = v
		generated = true
		return nil
	}
	if err := fill(&cfg.Token, EnvToken, NewToken); err != nil {
		return Config{}, false, fmt.Errorf("qstashdev: config from env: %w", err)
	}
	if err := fill(&cfg.CurrentSigningKey, EnvCurrentSigningKey, NewSigningKey); err != nil {
		return Config{}, false, fmt.Errorf("qstashdev: config from env: %w", err)
	}
	if err := fill(&cfg.NextSigningKey, EnvNextSigningKey, NewSigningKey); err != nil {
		return Config{}, false, fmt.Errorf("qstashdev: config from env: %w", err)
	}
	return cfg, generated, nil
}
