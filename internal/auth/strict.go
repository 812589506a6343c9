package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// errCritical refuses a token whose header has crit. RFC 7515 §4.1.11: a
// recipient must refuse a JWS naming in crit an extension it does not
// understand, and jobhook understands none, so any crit (even an empty or
// malformed one, which the RFC forbids anyway) is refused.
var errCritical = errors.New(`the token header has "crit": jobhook understands no JWS extension`)

// checkHeader refuses headers the verifiers cannot honour. It runs inside
// the key function, before any key lookup, so such a token never costs a
// JWKS fetch.
func checkHeader(t *jwt.Token) error {
	if _, ok := t.Header["crit"]; ok {
		return errCritical
	}
	return nil
}

// numericDateClaims are the registered claims whose value RFC 7519 §2
// defines as a NumericDate: a JSON number.
var numericDateClaims = []string{"exp", "nbf", "iat"}

// checkNumericDates refuses a claims set whose exp, nbf or iat is present
// and not a JSON number. golang-jwt reads a string such as "1700000000" as
// a date (and null as no claim at all); jobhook refuses both.
func checkNumericDates(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	for _, name := range numericDateClaims {
		v, ok := raw[name]
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
			return fmt.Errorf("claim %q is not a number", name)
		}
	}
	return nil
}

// hsClaims are the claims the HS256 verifier reads, with the NumericDate
// type check.
type hsClaims struct {
	jwt.RegisteredClaims
}

// UnmarshalJSON decodes the registered claims after checking that exp, nbf
// and iat are numbers.
func (c *hsClaims) UnmarshalJSON(data []byte) error {
	if err := checkNumericDates(data); err != nil {
		return err
	}
	return json.Unmarshal(data, &c.RegisteredClaims)
}
