// Package e2e holds the end-to-end tests of jobhook's traces: in process
// (the HTTP layer, the engine, the in-process QStash and a provider, on
// both backends, with the spans recorded in memory), and across two real
// `jobhook serve` processes exporting to an in-test OTLP/HTTP collector.
package e2e
