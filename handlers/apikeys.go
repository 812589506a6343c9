package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/jobs"
)

// HeaderActingUser names the user a service key's request acts for.
const HeaderActingUser = "X-Jobhook-User"

// MaxUserIDLength caps the user id a service key names.
const MaxUserIDLength = 255

// APIKeys keeps the service credentials (internal/apikeys.Store is one).
type APIKeys interface {
	// Verify returns the key a bearer token "jh_…" is; an unknown one is
	// apikeys.ErrUnknownKey, a revoked one apikeys.ErrRevoked.
	Verify(ctx context.Context, secret string) (apikeys.Key, error)
	// Create issues a key and returns it with the key itself.
	Create(ctx context.Context, name string, scopes []string) (apikeys.Key, string, error)
	// List returns every key.
	List(ctx context.Context) ([]apikeys.Key, error)
	// Revoke revokes a key at once.
	Revoke(ctx context.Context, id int64) (apikeys.Key, error)
}

// apiKeyKey is where requireUser stores a service key's id and name.
const apiKeyKey = "jobhook.api_key"

// serviceKey authenticates a request with a service key: the key must be
// live and carry the scope the method needs (jobs:read for GET and HEAD,
// jobs:write otherwise), and the request must name the user it acts for
// in X-Jobhook-User. It returns that user.
func (s *server) serviceKey(c echo.Context, secret string) (string, error) {
	key, err := s.cfg.APIKeys.Verify(c.Request().Context(), secret)
	switch {
	case errors.Is(err, apikeys.ErrUnknownKey):
		return "", apiError(http.StatusUnauthorized, CodeInvalidToken, "the API key is not one this server issued")
	case errors.Is(err, apikeys.ErrRevoked):
		return "", apiError(http.StatusUnauthorized, CodeInvalidToken, "the API key was revoked")
	case err != nil:
		return "", fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
	}
	c.Set(apiKeyKey, key)
	scope := apikeys.ScopeJobsWrite
	if m := c.Request().Method; m == http.MethodGet || m == http.MethodHead {
		scope = apikeys.ScopeJobsRead
	}
	if !key.Scopes.Has(scope) {
		return "", apiError(http.StatusForbidden, CodeInsufficientScope, fmt.Sprintf("the API key lacks the scope %s", scope))
	}
	user := c.Request().Header.Get(HeaderActingUser)
	if user == "" {
		return "", badRequest(CodeUserRequired, HeaderActingUser, "a service key acts for a user: name it in the "+HeaderActingUser+" header")
	}
	if len(user) > MaxUserIDLength || !printable(user) || strings.TrimSpace(user) != user {
		return "", badRequest(CodeInvalidUser, HeaderActingUser, fmt.Sprintf("%s must be 1 to %d bytes of printable text without surrounding spaces", HeaderActingUser, MaxUserIDLength))
	}
	return user, nil
}

// actingKey returns the service key of the request, if one authenticated it.
func actingKey(c echo.Context) (apikeys.Key, bool) {
	k, ok := c.Get(apiKeyKey).(apikeys.Key)
	return k, ok
}

// requireOperator refuses any caller but the operator (ADMIN_TOKEN).
func (s *server) requireOperator(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if userID(c) != jobs.Operator {
			return jobs.ErrOperatorOnly
		}
		return next(c)
	}
}

// createAPIKeyRequest is the body of POST /api/keys.
type createAPIKeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// createdAPIKey is the answer of POST /api/keys: the key's record and the
// key itself, shown this once.
type createdAPIKey struct {
	apikeys.Key
	Secret string `json:"key"`
}

// createAPIKey serves POST /api/keys {"name","scopes"} (operator only).
func (s *server) createAPIKey(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req createAPIKeyRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest(CodeInvalidJSON, "", `the body must be {"name":"…","scopes":["jobs:read","jobs:write"]}`)
	}
	k, secret, err := s.cfg.APIKeys.Create(c.Request().Context(), req.Name, req.Scopes)
	var ie *apikeys.InvalidError
	if errors.As(err, &ie) {
		return badRequest(CodeInvalidAPIKey, ie.Field, ie.Message)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
	}
	s.log.Info("API key created", "api_key_id", k.ID, "api_key_name", k.Name, "scopes", strings.Join(k.Scopes, " "))
	return c.JSON(http.StatusCreated, createdAPIKey{Key: k, Secret: secret})
}

// listAPIKeys serves GET /api/keys (operator only): every key, never the
// keys themselves.
func (s *server) listAPIKeys(c echo.Context) error {
	keys, err := s.cfg.APIKeys.List(c.Request().Context())
	if err != nil {
		return fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"keys": keys})
}

// revokeAPIKey serves POST /api/keys/:id/revoke (operator only).
func (s *server) revokeAPIKey(c echo.Context) error {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || strings.TrimLeft(raw, "0123456789") != "" {
		return badRequest(CodeInvalidAPIKey, "id", "the key id must be a positive integer")
	}
	k, err := s.cfg.APIKeys.Revoke(c.Request().Context(), id)
	if errors.Is(err, apikeys.ErrNotFound) {
		return apiError(http.StatusNotFound, CodeAPIKeyNotFound, fmt.Sprintf("no API key has the id %d", id))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
	}
	s.log.Info("API key revoked", "api_key_id", k.ID, "api_key_name", k.Name)
	return c.JSON(http.StatusOK, k)
}
