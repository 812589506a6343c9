package config_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/config"
)

// readmeConfigTable parses README's configuration table: each variable
// with the default the table gives it ("" for —).
func readmeConfigTable(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n## Configuration\n")
	require.True(t, ok, "README has no Configuration section")
	section, _, _ = strings.Cut(section, "\n## ")
	varName := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	out := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		require.GreaterOrEqual(t, len(cells), 3, "row %q", line)
		var names []string
		for _, m := range varName.FindAllStringSubmatch(cells[0], -1) {
			names = append(names, m[1])
		}
		require.NotEmpty(t, names, "row %q", line)
		defs := strings.Split(strings.TrimSpace(cells[1]), ", ")
		if len(defs) == 1 && len(names) > 1 && strings.TrimSpace(defs[0]) == "—" {
			defs = make([]string, len(names)) // one — for every variable of the row
		}
		require.Len(t, defs, len(names), "row %q: one default per variable", line)
		for i, n := range names {
			d := strings.Trim(strings.TrimSpace(defs[i]), "`")
			if d == "—" {
				d = ""
			}
			_, dup := out[n]
			require.False(t, dup, "%s is in the table twice", n)
			out[n] = d
		}
	}
	return out
}

// TestReadmeConfigTableMatchesTheCode: README's configuration table has
// every setting, no other, each with the default the code applies.
func TestReadmeConfigTableMatchesTheCode(t *testing.T) {
	table := readmeConfigTable(t)
	for _, s := range config.Settings() {
		d, ok := table[s.Name]
		if !ok {
			t.Errorf("README's configuration table lacks %s (default %q)", s.Name, s.Default)
			continue
		}
		if d != s.Default {
			t.Errorf("README gives %s the default %q; the code applies %q", s.Name, d, s.Default)
		}
		delete(table, s.Name)
	}
	for name := range table {
		t.Errorf("README's configuration table has %s, which is not a setting", name)
	}
}
