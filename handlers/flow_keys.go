package handlers

import (
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
