package jobs

import (
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		err := checkStorableJSON([]byte(tt.json))
		if (err == nil) != tt.ok {
			t.Errorf("checkStorableJSON(%.60s) = %v, want ok=%v", tt.json, err, tt.ok)
		}
	}
}
