package jobs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxNumberLiteral caps the length of one number in a payload.
const maxNumberLiteral = 1000

// maxExponent bounds the exponent written in a payload number. No number
// that fits a float64 needs more in a literal of at most maxNumberLiteral
// characters; it keeps a zero, which fits a float64 whatever its exponent,
// within what Postgres stores.
const maxExponent = 9999

// checkStorableJSON refuses the JSON that Go accepts but Postgres's JSONB
// does not, so that such a payload is a 400 on every backend instead of a
// failed INSERT (503) on Postgres alone:
//
//   - the escape \u0000 in a string or key;
//   - an unpaired UTF-16 surrogate escape such as "\ud800";
//   - a number that does not fit a float64 (such as 1e400 or 1e-99999),
//     or one longer than 1000 characters;
//   - a number written with an exponent outside -9999 to 9999, such as
//     0e-20000: Postgres keeps every decimal place a literal implies, even
//     on a zero, and refuses more than 16383 of them ("value overflows
//     numeric format").
//
// It returns the size of raw as Postgres stores and returns it: JSONB
// writes numbers out in full, without an exponent (1e308 comes back as 309
// digits, 0e-999 as 1001 characters), so a small payload of such numbers
// can be far larger once stored. The caller holds that size to the payload
// limit on every backend.
//
// raw must be well-formed JSON (it comes from a document json.Unmarshal
// accepted), so a plain scan over its bytes is enough.
func checkStorableJSON(raw []byte) (int, error) {
	size := len(raw)
	for i := 0; i < len(raw); {
		switch b := raw[i]; {
		case b == '"':
			end, err := scanString(raw, i+1)
			if err != nil {
				return 0, err
			}
			i = end
		case b == '-' || (b >= '0' && b <= '9'):
			end := i + 1
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			n, err := checkNumber(string(raw[i:end]))
			if err != nil {
				return 0, err
			}
			size += n - (end - i)
			i = end
		default:
			i++
		}
	}
	return size, nil
}

// scanString checks the string whose content starts at raw[i] and returns
// the index after its closing quote.
func scanString(raw []byte, i int) (int, error) {
	for i < len(raw) {
		switch raw[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				if !ok {
					return 0, errors.New("payload has a bad \\u escape")
				}
				switch {
				case r == 0:
					return 0, errors.New(`payload strings cannot contain \u0000`)
				case r >= 0xDC00 && r <= 0xDFFF:
					return 0, errors.New("payload has an unpaired UTF-16 surrogate escape")
				case r >= 0xD800 && r <= 0xDBFF:
					// A high surrogate must be followed by a low one.
					if i+11 >= len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' {
						return 0, errors.New("payload has an unpaired UTF-16 surrogate escape")
					}
					lo, ok := hex4(raw, i+8)
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return 0, errors.New("payload has an unpaired UTF-16 surrogate escape")
					}
					i += 12
					continue
				}
				i += 6
				continue
			}
			i += 2
		default:
			i++
		}
	}
	return 0, errors.New("payload has an unterminated string")
}

// hex4 decodes the four hex digits at raw[i:i+4].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16)
	return rune(n), err == nil
}

func isNumberByte(b byte) bool {
	return (b >= '0' && b <= '9') || b == '.' || b == 'e' || b == 'E' || b == '+' || b == '-'
}

// checkNumber refuses a number literal that is too long, has an exponent
// outside ±maxExponent, overflows a float64, or is non-zero but underflows
// to zero. It returns the length of the number as Postgres prints it.
func checkNumber(lit string) (int, error) {
	if len(lit) > maxNumberLiteral {
		return 0, fmt.Errorf("payload numbers cannot be longer than %d characters", maxNumberLiteral)
	}
	n, ok := parseLiteral(lit)
	if !ok {
		return 0, errors.New("payload has a malformed number")
	}
	if n.exp < -maxExponent || n.exp > maxExponent {
		return 0, fmt.Errorf("payload has a number out of range: exponents must be from %d to %d", -maxExponent, maxExponent)
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errors.New("payload has a number out of range")
	}
	if f == 0 && !n.zero() {
		return 0, errors.New("payload has a number out of range")
	}
	return n.printedLen(), nil
}

// literal is a JSON number literal taken apart: -intPart.fracPart e exp.
type literal struct {
	neg      bool
	intPart  string
	fracPart string
	exp      int
}

// parseLiteral splits a JSON number literal; false when it is not one. An
// exponent of more than 9 significant digits is taken as ±MaxInt32.
func parseLiteral(lit string) (literal, bool) {
	var n literal
	n.neg = strings.HasPrefix(lit, "-")
	mant := strings.TrimPrefix(lit, "-")
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		digits := mant[i+1:]
		mant = mant[:i]
		negExp := strings.HasPrefix(digits, "-")
		digits = strings.TrimLeft(strings.TrimLeft(digits, "+-"), "0")
		switch {
		case len(digits) > 9:
			n.exp = math.MaxInt32 // out of range, whatever its exact value
		case digits != "":
			e, err := strconv.Atoi(digits)
			if err != nil {
				return n, false
			}
			n.exp = e
		}
		if negExp {
			n.exp = -n.exp
		}
	}
	n.intPart, n.fracPart, _ = strings.Cut(mant, ".")
	if n.intPart == "" || strings.Trim(n.intPart+n.fracPart, "0123456789") != "" {
		return n, false
	}
	return n, true
}

// zero reports whether every digit of the mantissa is 0.
func (n literal) zero() bool {
	return strings.Trim(n.intPart+n.fracPart, "0") == ""
}

// printedLen is the length of the number as Postgres's numeric output
// writes it: no exponent, a sign only when it is not zero, at least one
// integer digit, and every decimal place the literal implies (its
// fraction digits less its exponent).
func (n literal) printedLen() int {
	digits := n.intPart + n.fracPart
	size := 1 // a zero's integer part
	if lz := len(digits) - len(strings.TrimLeft(digits, "0")); lz < len(digits) {
		size = max(1, len(n.intPart)+n.exp-lz)
		if n.neg {
			size++
		}
	}
	if scale := len(n.fracPart) - n.exp; scale > 0 {
		size += 1 + scale
	}
	return size
}
