// Package e2e holds end-to-end tests of jobhook driven by QStash: the HTTP
// layer, the engine and the in-process QStash (internal/qstashdev) talking
// over real HTTP with the real qstash-go client, on a clock the tests move.
package e2e
