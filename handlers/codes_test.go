package handlers_test

import (
	"bufio"
	"encoding/json"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// TestErrorCodesAreOneList: every Code constant is in ErrorCodes once,
// with a status and a description, and every entry is a constant.
func TestErrorCodesAreOneList(t *testing.T) {
	consts := codeConstants(t)
	var listed []string
	for _, c := range handlers.ErrorCodes {
		require.NotContains(t, listed, c.Code, "listed twice")
		listed = append(listed, c.Code)
		require.GreaterOrEqual(t, c.Status, 400, c.Code)
		require.NotEmpty(t, c.When, c.Code)
		got, ok := handlers.LookupErrorCode(c.Code)
		require.True(t, ok)
		require.Equal(t, c, got)
	}
	slices.Sort(listed)
	require.Equal(t, consts, listed, "the Code constants and ErrorCodes differ")
}

// codeConstants returns the values of the handlers package's Code*
// constants, sorted.
func codeConstants(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range parseDir(t, ".") {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if strings.HasPrefix(name.Name, "Code") && i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
						v, err := strconv.Unquote(lit.Value)
						require.NoError(t, err)
						out = append(out, v)
					}
				}
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	var files []*ast.File
	fset := gotoken.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		require.NoError(t, err)
		files = append(files, f)
	}
	return files
}

// codeLiterals finds the string literals used as error codes in the Go
// files of dir: the Code field of a composite literal (APIError,
// jobs.ValidationError), and the code argument of the helpers that build
// errors (apiError, badRequest, retryLater in handlers; invalid in jobs).
func codeLiterals(t *testing.T, dir string) []string {
	t.Helper()
	codeArg := map[string]int{"apiError": 1, "badRequest": 0, "retryLater": 1, "invalid": 0}
	var out []string
	literal := func(e ast.Expr) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
			v, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			out = append(out, v)
		}
	}
	for _, f := range parseDir(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Code" {
					literal(n.Value)
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok {
					if i, ok := codeArg[fn.Name]; ok && i < len(n.Args) {
						literal(n.Args[i])
					}
				}
			}
			return true
		})
	}
	return out
}

// TestNoUnlistedCodeLiterals: the handlers build every error from the Code
// constants, and the codes jobs and the job types put in their
// validation errors are all in ErrorCodes (an unlisted one would reach
// clients as bad_request).
func TestNoUnlistedCodeLiterals(t *testing.T) {
	require.Empty(t, codeLiterals(t, "."), "handlers must use the Code constants, not string literals")
	// Codes no request can cause, so ErrorCodes leaves them out.
	unreachable := map[string]string{
		"invalid_user": "jobs.Service refuses an empty user id; requireUser always sets one",
	}
	dirs := []string{"../jobs", "../tasks"}
	internal, err := filepath.Glob("../internal/*")
	require.NoError(t, err)
	dirs = append(dirs, internal...)
	found := 0
	for _, dir := range dirs {
		for _, code := range codeLiterals(t, dir) {
			found++
			if _, ok := unreachable[code]; ok {
				continue
			}
			_, ok := handlers.LookupErrorCode(code)
			require.True(t, ok, "%s returns the code %q, which handlers.ErrorCodes does not list", dir, code)
		}
	}
	require.Greater(t, found, 10, "the scan found the codes of jobs and tasks")
}

// TestREADMEErrorTable: README's error table lists exactly the codes of
// ErrorCodes, each with its status.
func TestREADMEErrorTable(t *testing.T) {
	f, err := os.Open("../README.md")
	require.NoError(t, err)
	defer f.Close()
	row := regexp.MustCompile("^\\| (`[a-z_]+`(?:, `[a-z_]+`)*) \\| (\\d{3}) \\|")
	code := regexp.MustCompile("`([a-z_]+)`")
	readme := map[string]int{}
	inErrors := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			inErrors = line == "### Errors"
			continue
		}
		m := row.FindStringSubmatch(line)
		if !inErrors || m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[2])
		for _, c := range code.FindAllStringSubmatch(m[1], -1) {
			require.NotContains(t, readme, c[1], "README lists %s twice", c[1])
			readme[c[1]] = status
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, readme, `no error table under "### Errors" in README.md`)
	for _, c := range handlers.ErrorCodes {
		status, ok := readme[c.Code]
		require.True(t, ok, "README's error table lacks %s; add the row:\n| `%s` | %d | %s |", c.Code, c.Code, c.Status, c.When)
		require.Equal(t, c.Status, status, "README gives %s the wrong status", c.Code)
		delete(readme, c.Code)
	}
	require.Empty(t, readme, "README lists codes the server never returns")
}

// weirdValidator refuses every payload with a code ErrorCodes lacks.
type weirdValidator struct{ echoHandler }

func (weirdValidator) ValidatePayload(json.RawMessage) error {
	return &jobs.ValidationError{Code: "weird_code", Message: "payload.x is weird", Fields: []jobs.FieldError{{Field: "payload.x", Message: "weird"}}}
}

// TestUnlistedValidationCodeIsBadRequest: a job type's validation error
// with a code ErrorCodes lacks reaches the client as bad_request, its
// message and fields intact.
func TestUnlistedValidationCodeIsBadRequest(t *testing.T) {
	bb := setup(t, testenv.Embedded(t), func(cfg *handlers.Config) {
		cfg.Service.Registry().MustRegister("weird", weirdValidator{})
	})
	eb := requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs", `{"type":"weird","payload":{"x":1}}`), http.StatusBadRequest, "bad_request")
	require.Equal(t, "payload.x is weird", eb.Error.Message)
	require.Len(t, eb.Error.Fields, 1)
}
