package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// defaultFlowKeyList is how many keys GET /api/flow-keys lists without
// ?limit=.
const defaultFlowKeyList = 100

// listFlowKeys serves GET /api/flow-keys: the status of the flow keys seen
// most recently, newest first, for an operator.
func (s *server) listFlowKeys(c echo.Context) error {
	prefix := c.QueryParam("prefix")
	if !printable(prefix) {
		return badRequest(CodeInvalidFlowKey, "prefix", "prefix must be printable text")
	}
	limit := defaultFlowKeyList
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 1000 {
			return badRequest(CodeInvalidLimit, "limit", fmt.Sprintf("limit must be an integer from 1 to %d", 1000))
		}
		limit = n
	}
	keys, err := s.cfg.Service.FlowKeys(c.Request().Context(), userID(c), prefix, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"keys": keys})
}

// getFlowKey serves GET /api/flow-keys/:key: one key's status, for an
// operator.
func (s *server) getFlowKey(c echo.Context) error {
	st, err := s.cfg.Service.FlowKey(c.Request().Context(), userID(c), c.Param("key"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// holdFlowKey serves POST /api/flow-keys/:key/pause with an optional body
// {"reason":"…"}: an operator holds the key until it is resumed.
func (s *server) holdFlowKey(c echo.Context) error {
	reason, err := pauseReason(c)
	if err != nil {
		return err
	}
	st, err := s.cfg.Service.HoldFlowKey(c.Request().Context(), userID(c), c.Param("key"), reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// resumeFlowKey serves POST /api/flow-keys/:key/resume: the key's hold or
// pause ends and its parked jobs run again.
func (s *server) resumeFlowKey(c echo.Context) error {
	st, err := s.cfg.Service.ResumeFlowKey(c.Request().Context(), userID(c), c.Param("key"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// listJobTypes serves GET /api/job-types: every job type and whether an
// operator holds it.
func (s *server) listJobTypes(c echo.Context) error {
	types, err := s.cfg.Service.Types(c.Request().Context(), userID(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"types": types})
}

// holdJobType serves POST /api/job-types/:type/pause with an optional
// body {"reason":"…"}: an operator holds the type until it is resumed.
func (s *server) holdJobType(c echo.Context) error {
	reason, err := pauseReason(c)
	if err != nil {
		return err
	}
	st, err := s.cfg.Service.HoldType(c.Request().Context(), userID(c), c.Param("type"), reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// resumeJobType serves POST /api/job-types/:type/resume.
func (s *server) resumeJobType(c echo.Context) error {
	st, err := s.cfg.Service.ResumeType(c.Request().Context(), userID(c), c.Param("type"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// pauseReason reads the optional body of a pause: empty, or
// {"reason":"…"} with printable text.
func pauseReason(c echo.Context) (string, error) {
	body, err := readBody(c)
	if err != nil {
		return "", err
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return "", badRequest(CodeInvalidJSON, "", `the body must be empty or a JSON object such as {"reason":"account under review"}`)
		}
	}
	if !printable(req.Reason) {
		return "", badRequest(CodeInvalidJSON, "reason", "reason must be printable text")
	}
	return req.Reason, nil
}
