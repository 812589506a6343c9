package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/jobs"
)

// userKey is where requireUser stores the user id in the Echo context.
const userKey = "jobhook.user_id"

// requireUser checks "Authorization: Bearer <token>" — the ADMIN_TOKEN,
// a service key "jh_…" (with Config.APIKeys; see serviceKey), or else a
// user's token, checked by the configured TokenVerifier — and stores the
// user id (the operator, the user the key acts for, or the token's sub)
// for the handler.
// No header is missing_token; a header that is not a Bearer token, or a
// token the verifier refuses, is invalid_token (token_expired when it has
// only expired).
func (s *server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		header := c.Request().Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return apiError(http.StatusUnauthorized, CodeMissingToken, `an "Authorization: Bearer <token>" header is required`)
		}
		token, ok := bearerToken(header)
		if !ok {
			return apiError(http.StatusUnauthorized, CodeInvalidToken, `the Authorization header must be "Bearer <token>"`)
		}
		if s.adminToken != nil && subtle.ConstantTimeCompare(hashToken(token), s.adminToken) == 1 {
			c.Set(userKey, jobs.Operator)
			return next(c)
		}
		if s.cfg.APIKeys != nil && strings.HasPrefix(token, apikeys.Prefix) {
			user, err := s.serviceKey(c, token)
			if err != nil {
				return err
			}
			c.Set(userKey, user)
			return next(c)
		}
		userID, err := s.cfg.Verifier.Verify(c.Request().Context(), token)
		if err != nil {
			return tokenError(err)
		}
		c.Set(userKey, userID)
		return next(c)
	}
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive (RFC 9110).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// userID returns the id requireUser stored.
func userID(c echo.Context) string {
	id, _ := c.Get(userKey).(string)
	return id
}
