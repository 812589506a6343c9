package jobs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// maxNumberLiteral caps the length of one number in a payload.
const maxNumberLiteral = 1000

// checkStorableJSON refuses the JSON that Go accepts but Postgres's JSONB
// does not, so that such a payload is a 400 on every backend instead of a
// failed INSERT (503) on Postgres alone:
//
//   - the escape \u0000 in a string or key;
//   - an unpaired UTF-16 surrogate escape such as "\ud800";
//   - a number that does not fit a float64 (such as 1e400 or 1e-99999),
//     or one longer than 1000 characters.
//
// raw must be well-formed JSON (it comes from a document json.Unmarshal
// accepted), so a plain scan over its bytes is enough.
func checkStorableJSON(raw []byte) error {
	for i := 0; i < len(raw); {
		switch b := raw[i]; {
		case b == '"':
			end, err := scanString(raw, i+1)
			if err != nil {
				return err
			}
			i = end
		case b == '-' || (b >= '0' && b <= '9'):
			end := i + 1
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			if err := checkNumber(string(raw[i:end])); err != nil {
				return err
			}
			i = end
		default:
			i++
		}
	}
	return nil
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

// checkNumber refuses a number literal that is too long, overflows a
// float64, or is non-zero but underflows to zero.
func checkNumber(lit string) error {
	if len(lit) > maxNumberLiteral {
		return fmt.Errorf("payload numbers cannot be longer than %d characters", maxNumberLiteral)
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return errors.New("payload has a number out of range")
	}
	if f == 0 && !isZeroLiteral(lit) {
		return errors.New("payload has a number out of range")
	}
	return nil
}

// isZeroLiteral reports whether the mantissa of a number literal is zero.
func isZeroLiteral(lit string) bool {
	for i := 0; i < len(lit); i++ {
		switch c := lit[i]; {
		case c == 'e' || c == 'E':
			return true
		case c >= '1' && c <= '9':
			return false
		}
	}
	return true
}
