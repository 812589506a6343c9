package client_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/jobs"
)

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	var names []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("json"); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	slices.Sort(names)
	return names
}

// TestDrainSummaryMatchesTheServers: the client keeps its own copy of the
// drain summary (so it does not import the engine); it must read every
// field the server writes, and no other.
func TestDrainSummaryMatchesTheServers(t *testing.T) {
	require.Equal(t, jsonFields(jobs.DrainSummary{}), jsonFields(client.DrainSummary{}))
}
