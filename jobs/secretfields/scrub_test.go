package secretfields

import (
	"html"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestScrubAnyCaseAndHTMLEscaped: a secret is scrubbed whatever the case
// an upstream echoes it in, and HTML-escaped in any spelling, on top of
// the raw, URL, JSON and Go-quoted forms.
func TestScrubAnyCaseAndHTMLEscaped(t *testing.T) {
	const (
		tokA = "EAAB-top-secret-token-7f3a9c"
		tokB = "tgt1-sécret-<b>-token"
		tokC = "tgt0-secret/with+plus&amp=eq"
		tokD = `quote"and'apos`
	)
	secrets := []string{tokA, tokB, tokC, tokD}
	for _, tc := range []struct{ text, want string }{
		// The forms scrubbed before.
		{"token " + tokA + " refused", "token [redacted] refused"},
		{"url ?t=" + url.QueryEscape(tokC) + "&x=1", "url ?t=[redacted]&x=1"},
		{`json {"t":"tgt1-sécret-\u003cb\u003e-token"}`, `json {"t":"[redacted]"}`},
		{`go "quote\"and'apos"`, `go "[redacted]"`},
		// Any case.
		{"token " + strings.ToLower(tokA) + " refused", "token [redacted] refused"},
		{"TOKEN " + strings.ToUpper(tokA), "TOKEN [redacted]"},
		{"mixed eAaB-ToP-sEcReT-tOkEn-7F3A9C.", "mixed [redacted]."},
		{"upper " + strings.ToUpper(tokB), "upper [redacted]"},
		{"query " + strings.ToLower(url.QueryEscape(tokC)), "query [redacted]"},
		// HTML-escaped, in every spelling of a character reference.
		{"<p>" + html.EscapeString(tokB) + "</p>", "<p>[redacted]</p>"},
		{"<p>" + html.EscapeString(tokC) + "</p>", "<p>[redacted]</p>"},
		{"<p>" + html.EscapeString(tokD) + "</p>", "<p>[redacted]</p>"},
		{"quote&quot;and&apos;apos", "[redacted]"},
		{"quote&#x22;and&#X27;apos", "[redacted]"},
		{"tgt1-s&eacute;cret-&#60;b&#0062;-token", "[redacted]"},
		{"TGT1-S&Eacute;CRET-&LT;B&GT;-TOKEN", "[redacted]"},
		{"&#69;&#x41;AB-top-secret-token-7f3a9c", "[redacted]"},
		{"html of the url " + html.EscapeString(url.QueryEscape(tokC)), "html of the url [redacted]"},
		// Neighbours and look-alikes survive.
		{"EAAB-top-secret-token-7f3a9", "EAAB-top-secret-token-7f3a9"},
		{"tgt1-sécret-&lt;b-token", "tgt1-sécret-&lt;b-token"},
		{"a & b &amp; c &#; &#xZZ; &nosuch; &", "a & b &amp; c &#; &#xZZ; &nosuch; &"},
		{"twice: " + tokA + strings.ToLower(tokA) + " end", "twice: [redacted] end"},
	} {
		if got := Scrub(tc.text, secrets); got != tc.want {
			t.Errorf("Scrub(%q)\n got %q\nwant %q", tc.text, got, tc.want)
		}
	}
}

// FuzzScrub: whatever the text around it, no copy of the secret survives
// as it is, upper- or lower-cased, or HTML-escaped.
func FuzzScrub(f *testing.F) {
	f.Add("tok", "x tok y")
	f.Add("Se&cret<", "se&amp;CRET&lt;")
	f.Add("ä", "Ä&auml;")
	f.Add("ı", "I")
	f.Fuzz(func(t *testing.T, secret, text string) {
		// A secret inside "[redacted]", or ending or starting like it,
		// could be spelt anew by the replacement and the text around it.
		// Secrets come from JSON strings: always UTF-8 (an invalid
		// byte would join the text's next bytes into another rune).
		if secret == "" || !utf8.ValidString(secret) || strings.ContainsAny(secret, "[]") || strings.Contains(Redacted, strings.ToLower(secret)) {
			return
		}
		for _, variant := range []string{secret, strings.ToUpper(secret), strings.ToLower(secret), html.EscapeString(secret)} {
			out := Scrub(text+variant+text, []string{secret})
			if strings.Contains(out, variant) {
				t.Fatalf("Scrub(%q, %q) = %q keeps %q", text+variant+text, secret, out, variant)
			}
		}
	})
}
