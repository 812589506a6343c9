// Package jobhook holds what the binary embeds from the repository root:
// the default qstash.schedules.json, used by the embedded QStash when the
// working folder has none.
package jobhook

import _ "embed"

// DefaultSchedules is the committed qstash.schedules.json.
//
//go:embed qstash.schedules.json
var DefaultSchedules []byte
