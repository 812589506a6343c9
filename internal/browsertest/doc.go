// Package browsertest drives the dashboard (internal/dashboard) in a real
// headless Chromium, with chromedp, against a real `jobhook serve`
// process: sign-in, retries, bulk retries, pauses, CSRF refusals and
// secrets kept off the pages. It holds tests only.
//
// The tests need Debian's chromium at /usr/bin/chromium (or the path in
// JOBHOOK_CHROMIUM); without it they skip, unless
// JOBHOOK_REQUIRE_BROWSER=1, when they fail. They never download a
// browser. With TEST_DATABASE_URL and TEST_REDIS_URL the server runs on a
// fresh Postgres schema and Redis key prefix; without them, on its
// embedded defaults in a temporary folder. Screenshots go to
// $JOBHOOK_ARTIFACTS_DIR/screenshots when set.
package browsertest
