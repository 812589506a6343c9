package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sessionVersion prefixes every session value, so a change of format
// refuses the old cookies instead of misreading them.
const sessionVersion = "v1"

// sessions signs and checks the stateless session cookies. The key is
// derived from ADMIN_TOKEN, so every instance with the same token accepts
// the same cookies, and changing the token signs everyone out.
type sessions struct {
	key       []byte
	tokenHash []byte
	ttl       time.Duration
}

func newSessions(adminToken string, ttl time.Duration) *sessions {
	mac := hmac.New(sha256.New, []byte(adminToken))
	mac.Write([]byte("jobhook dashboard session key " + sessionVersion))
	h := sha256.Sum256([]byte(adminToken))
	return &sessions{key: mac.Sum(nil), tokenHash: h[:], ttl: ttl}
}

// checkToken compares a submitted token with ADMIN_TOKEN in constant time
// (both hashed first, so their lengths do not show either).
func (s *sessions) checkToken(submitted string) bool {
	h := sha256.Sum256([]byte(submitted))
	return subtle.ConstantTimeCompare(h[:], s.tokenHash) == 1
}

// session is one signed-in browser.
type session struct {
	// body is "v1.<expiry unix>.<nonce hex>", the signed part.
	body    string
	expires time.Time
}

// issue makes a new session expiring ttl after now, and its cookie value.
func (s *sessions) issue(now time.Time) (session, string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return session{}, "", fmt.Errorf("dashboard: session nonce: %w", err)
	}
	exp := now.Add(s.ttl).Truncate(time.Second)
	body := sessionVersion + "." + strconv.FormatInt(exp.Unix(), 10) + "." + hex.EncodeToString(nonce)
	return session{body: body, expires: exp}, body + "." + s.sign("session", body), nil
}

// parse checks a cookie value: well formed, signed with this key, not
// expired at now.
func (s *sessions) parse(value string, now time.Time) (session, bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return session{}, false
	}
	body, sig := value[:i], value[i+1:]
	if !hmac.Equal([]byte(sig), []byte(s.sign("session", body))) {
		return session{}, false
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 || parts[0] != sessionVersion {
		return session{}, false
	}
	unix, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return session{}, false
	}
	exp := time.Unix(unix, 0)
	if !now.Before(exp) {
		return session{}, false
	}
	return session{body: body, expires: exp}, true
}

// csrfToken is the token the session's forms carry: bound to the session,
// so a token from another session (or none) is refused.
func (s *sessions) csrfToken(sess session) string { return s.sign("csrf", sess.body) }

// checkCSRF compares a submitted token with the session's in constant time.
func (s *sessions) checkCSRF(sess session, submitted string) bool {
	return hmac.Equal([]byte(submitted), []byte(s.csrfToken(sess)))
}

// sign is the base64url HMAC-SHA256 of purpose and body.
func (s *sessions) sign(purpose, body string) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(purpose + "\x00" + body))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
