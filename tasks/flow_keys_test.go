package tasks_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

const flowTestAPIKey = "sk-proj-FLOWKEY-secret-0123456789"

// flowTestRegistry registers every job type as the server does.
func flowTestRegistry(t *testing.T) *jobs.Registry {
	t.Helper()
	reg := jobs.NewRegistry()
	if err := tasks.Register(reg, tasks.Config{OpenAI: tasks.OpenAIConfig{APIKey: flowTestAPIKey}}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestFlowKeysOfEveryType is the table of each job type's flow keys; a
// type added without a decision about its keys fails it.
func TestFlowKeysOfEveryType(t *testing.T) {
	id := tasks.OpenAIKeyID(flowTestAPIKey)
	cases := []struct {
		name, typ, payload string
		want               []string // nil: the type has no keys
		wantErr            bool
	}{
		{"instagram", tasks.TypeSocialPublishInstagram,
			`{"igUserId":"17841400000000001","accessToken":"EAAB","imageUrls":["https://cdn.example.com/a.jpg"]}`,
			[]string{"ig:17841400000000001", "graph:app"}, false},
		{"instagram with a sealed token", tasks.TypeSocialPublishInstagram,
			`{"igUserId":"17841400000000001","accessToken":{"$secret":"v1:k1:AAAA"},"imageUrls":["https://cdn.example.com/a.jpg"]}`,
			[]string{"ig:17841400000000001", "graph:app"}, false},
		{"instagram bad id", tasks.TypeSocialPublishInstagram, `{"igUserId":"17841400000000001/x","accessToken":"EAAB"}`, nil, true},
		{"instagram id not a string", tasks.TypeSocialPublishInstagram, `{"igUserId":17841400000000001}`, nil, true},
		{"instagram no id", tasks.TypeSocialPublishInstagram, `{"accessToken":"EAAB"}`, nil, true},
		{"facebook", tasks.TypeSocialPublishFacebook,
			`{"pageId":"102030405060708","accessToken":"EAAB","message":"hi"}`,
			[]string{"fb:102030405060708", "graph:app"}, false},
		{"facebook bad id", tasks.TypeSocialPublishFacebook, `{"pageId":"../me","accessToken":"EAAB","message":"hi"}`, nil, true},
		{"text default model", tasks.TypeAITextGeneration, `{"prompt":"hi"}`, []string{"openai:" + id + ":" + tasks.OpenAITextModelDefault}, false},
		{"text model", tasks.TypeAITextGeneration, `{"prompt":"hi","model":"ft:gpt-4o-mini:org:x"}`, []string{"openai:" + id + ":ft:gpt-4o-mini:org:x"}, false},
		{"text bad model", tasks.TypeAITextGeneration, `{"prompt":"hi","model":"a b"}`, nil, true},
		{"image default model", tasks.TypeAIImageGeneration, `{"prompt":"a cat"}`, []string{"openai:" + id + ":" + tasks.OpenAIImageModelDefault}, false},
		{"image model", tasks.TypeAIImageGeneration, `{"prompt":"a cat","model":"gpt-image-1"}`, []string{"openai:" + id + ":gpt-image-1"}, false},
		{"web", tasks.TypeWebScraping, `{"url":"https://Example.COM.:8443/a?b#c"}`, []string{"host:example.com"}, false},
		{"web ipv6", tasks.TypeWebScraping, `{"url":"http://[::1]:8080/"}`, []string{"host:::1"}, false},
		{"web bad url", tasks.TypeWebScraping, `{"url":"ftp://example.com/"}`, nil, true},
		{"carousel has none", tasks.TypeCarouselCreation, `{"topic":"x"}`, nil, false},
		{"scheduled publish has none", tasks.TypeScheduledPublish, `{}`, nil, false},
	}
	reg := flowTestRegistry(t)
	covered := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			covered[c.typ] = true
			h, ok := reg.Lookup(c.typ)
			if !ok {
				t.Fatalf("type %s is not registered", c.typ)
			}
			fk, ok := h.(jobs.FlowKeyer)
			if c.want == nil && !c.wantErr {
				if ok {
					t.Fatalf("%s implements FlowKeyer; its children carry the keys", c.typ)
				}
				return
			}
			if !ok {
				t.Fatalf("%s does not implement jobs.FlowKeyer", c.typ)
			}
			got, err := fk.FlowKeys(json.RawMessage(c.payload))
			if c.wantErr {
				if err == nil {
					t.Fatalf("FlowKeys = %v, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("FlowKeys = %v, %v; want %v", got, err, c.want)
			}
			for _, k := range got {
				if strings.Contains(k, flowTestAPIKey) || strings.Contains(k, "EAAB") || strings.Contains(k, "secret") {
					t.Errorf("key %q carries a secret", k)
				}
			}
		})
	}
	for _, typ := range reg.Types() {
		if !covered[typ] {
			t.Errorf("type %s has no case in the flow key table", typ)
		}
	}
}

// TestFlowKeysRefuseGarbage: every keyed type answers an error, never a
// panic, for payloads that are not what it reads.
func TestFlowKeysRefuseGarbage(t *testing.T) {
	reg := flowTestRegistry(t)
	for _, typ := range reg.Types() {
		h, _ := reg.Lookup(typ)
		fk, ok := h.(jobs.FlowKeyer)
		if !ok {
			continue
		}
		for _, p := range []string{``, `null`, `[]`, `"x"`, `{`, `{"igUserId":null,"pageId":[],"url":1,"prompt":{}}`} {
			if keys, err := fk.FlowKeys(json.RawMessage(p)); err == nil {
				t.Errorf("%s: FlowKeys(%q) = %v, want an error", typ, p, keys)
			}
		}
	}
}

func FuzzFlowKeys(f *testing.F) {
	for _, s := range []string{`{"igUserId":"1","pageId":"2","url":"https://a.example/","prompt":"p","model":"m"}`, `{}`, `x`} {
		f.Add(s)
	}
	reg := jobs.NewRegistry()
	if err := tasks.Register(reg, tasks.Config{OpenAI: tasks.OpenAIConfig{APIKey: flowTestAPIKey}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		for _, typ := range reg.Types() {
			h, _ := reg.Lookup(typ)
			if fk, ok := h.(jobs.FlowKeyer); ok {
				keys, err := fk.FlowKeys(json.RawMessage(payload))
				if err == nil && len(keys) == 0 {
					t.Errorf("%s: no keys and no error", typ)
				}
			}
		}
	})
}

func TestOpenAIKeyID(t *testing.T) {
	id := tasks.OpenAIKeyID(flowTestAPIKey)
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("key id %q is not 12 hex digits", id)
	}
	if tasks.OpenAIKeyID(" "+flowTestAPIKey+"\n") != id {
		t.Error("the id depends on surrounding space, which the client trims")
	}
	if tasks.OpenAIKeyID(flowTestAPIKey+"x") == id {
		t.Error("two keys share an id")
	}
	if got := tasks.OpenAIKeyID(""); got != "none" {
		t.Errorf("id of no key = %q", got)
	}
	if strings.Contains(flowTestAPIKey, id) {
		t.Error("the id is part of the key")
	}
}
