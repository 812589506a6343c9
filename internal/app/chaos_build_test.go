package app_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// deps lists the packages ./cmd/jobhook links, built with the given tags.
func deps(t *testing.T, tags string) []string {
	t.Helper()
	args := []string{"list", "-deps"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.Command("go", append(args, "github.com/jobhook/jobhook/cmd/jobhook")...).CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.Fields(string(out))
}

// TestChaosTaskOnlyWithTheChaosTag: the test job type chaos_record
// (internal/chaostask) is not compiled into the jobhook binary unless it is
// built with -tags chaos, as the chaos suite builds it.
func TestChaosTaskOnlyWithTheChaosTag(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const pkg = "github.com/jobhook/jobhook/internal/chaostask"
	require.False(t, slices.Contains(deps(t, ""), pkg), "the production binary must not contain %s (chaos_record)", pkg)
	require.True(t, slices.Contains(deps(t, "chaos"), pkg), "the chaos build must contain %s (chaos_record)", pkg)
}
