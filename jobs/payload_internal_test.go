package jobs

import (
	"os"
	"strings"
	"testing"

	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/testenv"
)

func TestCheckStorableJSON(t *testing.T) {
	tests := []struct {
		json string
		ok   bool
	}{
		{`{}`, true},
		{`{"a":"plain","b":[1,-2.5,3e10,0,-0,0.0e-999,5e-324,1.7976931348623157e308],"c":null,"d":true}`, true},
		{`{"a":"\ud83d\ude00"}`, true},
		{`{"a":"\\u0000"}`, true},
		{`{"a":"\\\ud83d\ude00"}`, true},
		{`{"a":"\"\u0041\""}`, true},
		{`{"a":"\u0000"}`, false},
		{`{"\u0000":1}`, false},
		{`{"a":"x\u0000"}`, false},
		{`{"a":"\\\u0000"}`, false},
		{`{"a":"\ud800"}`, false},
		{`{"a":"\ud800x"}`, false},
		{`{"a":"\ud800\u0041"}`, false},
		{`{"a":"\ud800\ud800"}`, false},
		{`{"a":"\udc00"}`, false},
		{`{"a":"\uDFFF\uD800"}`, false},
		{`{"a":1e309}`, false},
		{`{"a":-1e309}`, false},
		{`{"a":1e-400}`, false},
		{`{"a":[1,2,1e999999999]}`, false},
		{`{"a":1` + strings.Repeat("0", 1000) + `}`, false},
		{`{"a":0.` + strings.Repeat("0", 500) + `1}`, false},
		// Exponents: Postgres keeps every decimal place a literal implies,
		// even on a zero, and refuses more than 16383.
		{`{"a":0e-9999}`, true},
		{`{"a":-0.000E+9999}`, true},
		{`{"a":0e-0000000000000000000000000000009999}`, true},
		{`{"a":0.` + strings.Repeat("0", 990) + `e-9999}`, true},
		{`{"a":0e-10000}`, false},
		{`{"a":0e10000}`, false},
		{`{"a":0e-20000}`, false},
		{`{"a":0E-16384}`, false},
		{`{"a":-0.0e+1073741823}`, false},
		{`{"a":[0,0e-99999999999999999999999999]}`, false},
		{`{"a":1e-10000}`, false},
	}
	for _, tt := range tests {
		_, err := checkStorableJSON([]byte(tt.json))
		if (err == nil) != tt.ok {
			t.Errorf("checkStorableJSON(%.60s) = %v, want ok=%v", tt.json, err, tt.ok)
		}
	}
}

// TestStoredSize: the size checkStorableJSON reports is the length of the
// payload as Postgres's JSONB prints it back; with TEST_DATABASE_URL set,
// Postgres itself confirms each expectation.
func TestStoredSize(t *testing.T) {
	var pg *database.DB
	if os.Getenv("TEST_DATABASE_URL") != "" {
		pg = testenv.Postgres(t)
	}
	for _, tt := range []struct {
		json string
		want string // as Postgres prints it
	}{
		{`[1e3]`, `[1000]`},
		{`[1.50]`, `[1.50]`},
		{`[-0]`, `[0]`},
		{`[-0.0]`, `[0.0]`},
		{`[123.45e2]`, `[12345]`},
		{`[1.5e-3]`, `[0.0015]`},
		{`[0.0e-3]`, `[0.0000]`},
		{`[-1.0e1]`, `[-10]`},
		{`[0.10e1]`, `[1.0]`},
		{`[0.000123E+2]`, `[0.0123]`},
		{`[12E-1]`, `[1.2]`},
		{`[1e308]`, `[1` + strings.Repeat("0", 308) + `]`},
		{`[0e-999]`, `[0.` + strings.Repeat("0", 999) + `]`},
		{`[0e99]`, `[0]`},
		{`{"a":"1e9","b":-7}`, `{"a":"1e9","b":-7}`},
	} {
		got, err := checkStorableJSON([]byte(tt.json))
		if err != nil || got != len(tt.want) {
			t.Errorf("checkStorableJSON(%.40s) = %d, %v; want %d", tt.json, got, err, len(tt.want))
		}
		if pg != nil && !strings.Contains(tt.json, ":") {
			var printed string
			if err := pg.Gorm.Raw("SELECT (?::jsonb)::text", tt.json).Scan(&printed).Error; err != nil {
				t.Fatalf("postgres: %s: %v", tt.json, err)
			}
			if printed != tt.want {
				t.Errorf("postgres prints %.40s as %.60s, the test expects %.60s", tt.json, printed, tt.want)
			}
		}
	}
}
