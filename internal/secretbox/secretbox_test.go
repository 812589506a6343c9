package secretbox_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/jobs/secretfields"
)

// Fixed test keys (never used outside tests).
var (
	keyA = bytes.Repeat([]byte{0xA1}, 32)
	keyB = bytes.Repeat([]byte{0xB2}, 32)
)

func entry(kid string, key []byte) string {
	return kid + ":" + base64.StdEncoding.EncodeToString(key)
}

func mustKeyring(t testing.TB, spec string) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.ParseKeyring(spec)
	require.NoError(t, err)
	return kr
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := mustKeyring(t, entry("a", keyA))
	aad := []byte("job-payload:accessToken")
	for _, plain := range [][]byte{nil, []byte(""), []byte(`"EAAB-token"`), bytes.Repeat([]byte("x"), 10000)} {
		sealed, err := kr.Seal(plain, aad)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(sealed, "v1.a."), sealed)
		require.NotContains(t, sealed, "=", "unpadded base64url")
		kid, ok := secretbox.KeyID(sealed)
		require.True(t, ok)
		require.Equal(t, "a", kid)
		got, err := kr.Open(sealed, aad)
		require.NoError(t, err)
		require.Equal(t, string(plain), string(got))
	}
	// Two seals of one value differ (random nonce).
	s1, _ := kr.Seal([]byte("same"), aad)
	s2, _ := kr.Seal([]byte("same"), aad)
	require.NotEqual(t, s1, s2)
}

func TestOpenRefusesOtherAAD(t *testing.T) {
	kr := mustKeyring(t, entry("a", keyA))
	sealed, err := kr.Seal([]byte("tok"), []byte("job-payload:accessToken"))
	require.NoError(t, err)
	for _, aad := range []string{"", "job-payload:refreshToken", "job-payload:accessToken ", "a.job-payload:accessToken"} {
		_, err := kr.Open(sealed, []byte(aad))
		require.ErrorIs(t, err, secretbox.ErrAuth, "aad %q", aad)
	}
}

// TestErrAuthIsNotAuthentic: the engine, which knows no keyring, tells an
// altered or misplaced value by secretfields.ErrNotAuthentic; the other
// errors do not match it, and ErrAuth's text is its own.
func TestErrAuthIsNotAuthentic(t *testing.T) {
	kr := mustKeyring(t, entry("a", keyA))
	sealed, err := kr.Seal([]byte("tok"), []byte("f"))
	require.NoError(t, err)
	_, err = kr.Open(sealed, []byte("g"))
	require.ErrorIs(t, err, secretbox.ErrAuth)
	require.ErrorIs(t, err, secretfields.ErrNotAuthentic)
	require.Equal(t, `secretbox: message authentication failed (key id "a")`, err.Error())
	for _, other := range []error{secretbox.ErrMalformed, secretbox.ErrUnknownKey} {
		require.False(t, errors.Is(other, secretfields.ErrNotAuthentic), "%v", other)
	}
	_, err = kr.Open("v1.zz."+strings.TrimPrefix(sealed, "v1.a."), []byte("f"))
	require.False(t, errors.Is(err, secretfields.ErrNotAuthentic), "%v", err)
}

func TestOpenRefusesTampering(t *testing.T) {
	kr := mustKeyring(t, entry("a", keyA)+","+entry("b", keyB))
	aad := []byte("f")
	sealed, err := kr.Seal([]byte("a secret value"), aad)
	require.NoError(t, err)
	prefix := "v1.a."
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, prefix))
	require.NoError(t, err)
	// Flip every bit of nonce, ciphertext and tag in turn.
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(raw)
			bad[i] ^= 1 << bit
			_, err := kr.Open(prefix+base64.RawURLEncoding.EncodeToString(bad), aad)
			require.ErrorIs(t, err, secretbox.ErrAuth, "byte %d bit %d", i, bit)
		}
	}
	// Truncated and extended.
	_, err = kr.Open(prefix+base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]), aad)
	require.ErrorIs(t, err, secretbox.ErrAuth)
	_, err = kr.Open(prefix+base64.RawURLEncoding.EncodeToString(append(bytes.Clone(raw), 0)), aad)
	require.ErrorIs(t, err, secretbox.ErrAuth)
	_, err = kr.Open(prefix+base64.RawURLEncoding.EncodeToString(raw[:27]), aad)
	require.ErrorIs(t, err, secretbox.ErrMalformed, "shorter than nonce+tag")
	// Relabelled to the other key: the key and the header both differ.
	_, err = kr.Open("v1.b."+strings.TrimPrefix(sealed, prefix), aad)
	require.ErrorIs(t, err, secretbox.ErrAuth)
}

func TestOpenMalformedAndUnknownKey(t *testing.T) {
	kr := mustKeyring(t, entry("a", keyA))
	other := mustKeyring(t, entry("z", keyB))
	sealed, err := other.Seal([]byte("x"), nil)
	require.NoError(t, err)
	_, err = kr.Open(sealed, nil)
	require.ErrorIs(t, err, secretbox.ErrUnknownKey)
	require.Contains(t, err.Error(), `"z"`)

	good, err := kr.Seal([]byte("x"), nil)
	require.NoError(t, err)
	body := strings.TrimPrefix(good, "v1.a.")
	for _, s := range []string{"", "v1", "v1.", "v1.a", "v1.a.", "v2.a." + body, "V1.a." + body, "v1..", "v1.a b." + body,
		"v1.a." + body + "=", "v1.a." + body + "!", "v1.a." + body[:len(body)-1] + "+", "v1.a." + body[:len(body)-1] + "/", "v1.a.a.a"} {
		_, err := kr.Open(s, nil)
		require.Error(t, err, "%q", s)
		require.True(t, errors.Is(err, secretbox.ErrMalformed) || errors.Is(err, secretbox.ErrAuth), "%q: %v", s, err)
	}
	var nilKR *secretbox.Keyring
	_, err = nilKR.Open(good, nil)
	require.Error(t, err)
	_, err = nilKR.Seal([]byte("x"), nil)
	require.Error(t, err)
}

func TestRotation(t *testing.T) {
	oldKR := mustKeyring(t, entry("a", keyA))
	sealedA, err := oldKR.Seal([]byte("old"), []byte("f"))
	require.NoError(t, err)

	rotated := mustKeyring(t, entry("b", keyB)+", "+entry("a", keyA))
	require.Equal(t, "b", rotated.Primary())
	require.Equal(t, []string{"b", "a"}, rotated.KeyIDs())
	got, err := rotated.Open(sealedA, []byte("f"))
	require.NoError(t, err)
	require.Equal(t, "old", string(got))
	sealedB, err := rotated.Seal([]byte("new"), []byte("f"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sealedB, "v1.b."))
	_, err = oldKR.Open(sealedB, []byte("f"))
	require.ErrorIs(t, err, secretbox.ErrUnknownKey)
}

func TestParseKeyringAcceptsBase64Variants(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(0xF8 + i%8) // bytes that make '+' and '/' (or '-' and '_')
	}
	ref := mustKeyring(t, entry("ref", key))
	sealed, err := ref.Seal([]byte("v"), nil)
	require.NoError(t, err)
	body := strings.TrimPrefix(sealed, "v1.ref.")
	for name, enc := range map[string]*base64.Encoding{"std": base64.StdEncoding, "rawstd": base64.RawStdEncoding, "url": base64.URLEncoding, "rawurl": base64.RawURLEncoding} {
		kr, err := secretbox.ParseKeyring("  ref:" + enc.EncodeToString(key) + "  \n")
		require.NoError(t, err, name)
		got, err := kr.Open("v1.ref."+body, nil)
		require.NoError(t, err, name)
		require.Equal(t, "v", string(got))
	}
}

func TestParseKeyringErrorsNameTheEntryNotTheKey(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33))
	good := entry("a", keyA)
	goodKey := base64.StdEncoding.EncodeToString(keyA)
	cases := []struct {
		spec, want string
		secret     string // must not appear in the error
	}{
		{"", "no keys", ""},
		{"   ", "no keys", ""},
		{good + ",", "entry 2 is empty", goodKey},
		{good + ",,b:" + goodKey, "entry 2 is empty", goodKey},
		{goodKey, "entry 1 is not kid:base64key", goodKey},
		{good + "," + goodKey, "entry 2 is not kid:base64key", goodKey},
		{":" + goodKey, "entry 1: empty key id", goodKey},
		{"a b:" + goodKey, "entry 1: key id may hold only", goodKey},
		{"a.b:" + goodKey, "entry 1: key id may hold only", goodKey},
		{strings.Repeat("k", 33) + ":" + goodKey, "longer than 32", goodKey},
		{"a:", `entry 1 (kid "a"): empty key`, ""},
		{"a:" + short, `entry 1 (kid "a"): key is 16 bytes, want 32`, short},
		{"a:" + long, `entry 1 (kid "a"): key is 33 bytes, want 32`, long},
		{good + ",b:not*base64!", `entry 2 (kid "b"): key is not valid base64`, "not*base64!"},
		{good + ",a:" + base64.StdEncoding.EncodeToString(keyB), `entry 2: key id "a" appears twice`, base64.StdEncoding.EncodeToString(keyB)},
		// Key material pasted as the kid is not echoed.
		{goodKey + ":" + goodKey, "entry 1: key id", goodKey},
	}
	for _, c := range cases {
		_, err := secretbox.ParseKeyring(c.spec)
		require.Error(t, err, "%q", c.spec)
		require.Contains(t, err.Error(), c.want, "%q", c.spec)
		if c.secret != "" {
			require.NotContains(t, err.Error(), c.secret)
			require.NotContains(t, err.Error(), c.secret[:8])
		}
	}
}

func TestKeyringPrintsNoKeyMaterial(t *testing.T) {
	kr := mustKeyring(t, entry("b", keyB)+","+entry("a", keyA))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "keys", kr, "keyval", *kr)
	outs := []string{fmt.Sprint(kr), fmt.Sprintf("%v %+v %#v %s", kr, *kr, kr, *kr), buf.String(),
		fmt.Sprintf("%+v", struct{ K secretbox.Keyring }{*kr}), fmt.Sprintf("%+v %#v", struct{ k secretbox.Keyring }{*kr}, struct{ k secretbox.Keyring }{*kr})}
	for _, out := range outs {
		require.Contains(t, out, "b")
		for _, key := range [][]byte{keyA, keyB} {
			require.NotContains(t, out, base64.StdEncoding.EncodeToString(key)[:12])
			require.NotContains(t, out, string(key[:4]))
			require.NotContains(t, out, fmt.Sprint(key[:4])[1:10])
			require.NotContains(t, out, fmt.Sprintf("%x", key[:4]))
		}
	}
}

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		e, err := secretbox.GenerateKey()
		require.NoError(t, err)
		require.False(t, seen[e])
		seen[e] = true
		kid, b64, ok := strings.Cut(e, ":")
		require.True(t, ok)
		require.Regexp(t, `^k[0-9a-f]{8}$`, kid)
		key, err := base64.StdEncoding.DecodeString(b64)
		require.NoError(t, err)
		require.Len(t, key, 32)
		kr := mustKeyring(t, e)
		s, err := kr.Seal([]byte("x"), []byte("y"))
		require.NoError(t, err)
		got, err := kr.Open(s, []byte("y"))
		require.NoError(t, err)
		require.Equal(t, "x", string(got))
	}
}

// FuzzOpen feeds Open arbitrary strings and additional data: it must never
// panic, must refuse anything it did not seal for that data, and must
// round-trip what it did.
func FuzzOpen(f *testing.F) {
	kr := mustKeyring(f, entry("b", keyB)+","+entry("a", keyA))
	good, err := kr.Seal([]byte(`"EAAB-token"`), []byte("job-payload:accessToken"))
	if err != nil {
		f.Fatal(err)
	}
	body := strings.TrimPrefix(good, "v1.b.")
	seeds := []struct{ sealed, aad string }{
		{good, "job-payload:accessToken"},
		{good, "job-payload:refreshToken"},
		{"v1.a." + body, "job-payload:accessToken"},
		{"v1.zz." + body, ""},
		{"v1.b." + body[:len(body)-2], ""},
		{"v1.b." + body + "A", ""},
		{"v1.b.", ""},
		{"v1..", ""},
		{"v1", ""},
		{"", ""},
		{"v2.b." + body, ""},
		{"v1.b." + strings.Repeat("A", 38), ""},
		{"v1.b.\x00\xff", "\x00"},
		{"v1." + strings.Repeat("k", 40) + "." + body, ""},
	}
	for _, s := range seeds {
		f.Add(s.sealed, []byte(s.aad))
	}
	f.Fuzz(func(t *testing.T, sealed string, aad []byte) {
		plain, err := kr.Open(sealed, aad)
		if err != nil {
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(keyA)[:8]) {
				t.Fatalf("error leaks key material: %v", err)
			}
			if !errors.Is(err, secretbox.ErrMalformed) && !errors.Is(err, secretbox.ErrUnknownKey) && !errors.Is(err, secretbox.ErrAuth) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Only a genuine value opens (a forgery is vanishingly unlikely);
		// fuzz workers each seal their own, so compare what it holds.
		if !strings.HasPrefix(sealed, "v1.b.") || string(aad) != "job-payload:accessToken" || string(plain) != `"EAAB-token"` {
			t.Fatalf("opened a value it did not seal: %q aad %q", sealed, aad)
		}
		again, err := kr.Seal(plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := kr.Open(again, aad); err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
