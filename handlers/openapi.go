package handlers

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPISpec is the OpenAPI 3.1 description of the API, served at
// GET /openapi.json. The conformance tests keep it in step with the
// routes, the statuses and ErrorCodes.
//
//go:embed openapi.json
var openAPISpec []byte

// openAPI serves GET /openapi.json.
func (s *server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPISpec)
}
