package secretfields

import (
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scrub replaces every occurrence of a secret in text with "[redacted]":
// as it is, and as it appears URL-query-escaped, URL-path-escaped, inside
// a JSON string or a Go-quoted string (a provider echoing a request or a
// URL); each of them in any letter case (an upstream that lower-cases what
// it echoes) and with any of its characters written as an HTML character
// reference such as &lt; &#60; &#x3C; (an error page rendered as HTML).
// Overlapping occurrences merge into one "[redacted]". Scrub before
// truncating, so a secret cut in two cannot survive. Empty secrets are
// ignored. This is the one scrubber of secret values: the engine's (job
// errors) and the task clients' (an API key, an access token) alike.
func Scrub(text string, secrets []string) string {
	if text == "" || len(secrets) == 0 {
		return text
	}
	var forms []string
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	for _, s := range secrets {
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		if b, err := json.Marshal(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		if b, err := marshalJSON(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		q := strconv.Quote(s)
		add(q[1 : len(q)-1])
	}
	var covered []bool
	cover := func(from, to int) {
		if covered == nil {
			covered = make([]bool, len(text))
		}
		for k := from; k < to; k++ {
			covered[k] = true
		}
	}
	for _, f := range forms {
		// Exact copies, byte for byte (whatever the encoding).
		for i := 0; i+len(f) <= len(text); {
			j := strings.Index(text[i:], f)
			if j < 0 {
				break
			}
			cover(i+j, i+j+len(f))
			i += j + 1
		}
		// Copies in another case or with character references.
		starts := firstBytes(f)
		for i := 0; i < len(text); i++ {
			if starts[text[i]] {
				if n := matchFold(text[i:], f); n > 0 {
					cover(i, i+n)
				}
			}
		}
	}
	if covered == nil {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !covered[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(text) && covered[i] {
			i++
		}
	}
	return b.String()
}

// firstBytes marks the bytes an occurrence of form can start with: the
// first byte of each case variant of its first rune, and '&' (a character
// reference).
func firstBytes(form string) *[256]bool {
	var t [256]bool
	t['&'] = true
	t[form[0]] = true // also when form is not UTF-8
	mark := func(r rune) {
		var buf [utf8.UTFMax]byte
		utf8.EncodeRune(buf[:], r)
		t[buf[0]] = true
	}
	first, _ := utf8.DecodeRuneInString(form)
	for _, c := range []rune{first, unicode.ToUpper(first), unicode.ToLower(first)} {
		mark(c)
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			mark(f)
			mark(unicode.ToUpper(f))
			mark(unicode.ToLower(f))
		}
	}
	return &t
}

// matchFold returns the length of the prefix of s that spells want, rune
// by rune, ignoring case (Unicode simple folding) and reading an HTML
// character reference as the character it stands for; -1 when s does not
// start with want. An empty want matches the empty prefix.
func matchFold(s, want string) int {
	if want == "" {
		return 0
	}
	w, wn := utf8.DecodeRuneInString(want)
	if s == "" {
		return -1
	}
	r, n := utf8.DecodeRuneInString(s)
	if sameFold(r, w) {
		if m := matchFold(s[n:], want[wn:]); m >= 0 {
			return n + m
		}
	}
	if r == '&' {
		if cr, cn := charRef(s); cn > 0 && sameFold(cr, w) {
			if m := matchFold(s[cn:], want[wn:]); m >= 0 {
				return cn + m
			}
		}
	}
	return -1
}

// sameFold reports whether a and b are the same rune ignoring case:
// equal under simple folding, or with the same upper or lower case (ı and
// I, which folding keeps apart, are one letter to strings.ToUpper).
func sameFold(a, b rune) bool {
	if a == b || unicode.ToUpper(a) == unicode.ToUpper(b) || unicode.ToLower(a) == unicode.ToLower(b) {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// maxCharRef bounds the length of an HTML character reference read by
// charRef ("&CounterClockwiseContourIntegral;" is the longest name).
const maxCharRef = 40

// charRef decodes the HTML character reference at the start of s (&amp;
// &#38; &#x26;, names in HTML5's table, ';' required) and returns the
// character and the reference's length; 0 when s does not start with one.
func charRef(s string) (rune, int) {
	end := strings.IndexByte(s[:min(len(s), maxCharRef)], ';')
	if end < 2 || s[0] != '&' {
		return 0, 0
	}
	ref := s[1:end]
	if num, ok := strings.CutPrefix(ref, "#"); ok {
		base := 10
		if hex, ok := strings.CutPrefix(strings.ToLower(num), "x"); ok {
			num, base = hex, 16
		}
		v, err := strconv.ParseUint(num, base, 32)
		if err != nil || num == "" || num[0] == '+' || v > unicode.MaxRune {
			return 0, 0
		}
		return rune(v), end + 1
	}
	decoded := html.UnescapeString(s[:end+1])
	r, size := utf8.DecodeRuneInString(decoded)
	if decoded == s[:end+1] || size != len(decoded) {
		return 0, 0
	}
	return r, end + 1
}
