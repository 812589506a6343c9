package safehttp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fakedns "github.com/jobhook/jobhook/internal/fakes/dns"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// countingServer answers 200 "ok" and counts the requests it receives.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func get(t *testing.T, c *http.Client, rawURL string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func requireBlocked(t *testing.T, err error) *BlockedError {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, ErrBlockedAddress)
	var uerr *url.Error
	require.ErrorAs(t, err, &uerr, "the refusal comes back wrapped in *url.Error")
	var berr *BlockedError
	require.ErrorAs(t, err, &berr)
	return berr
}

func TestNewClientNoProxy(t *testing.T) {
	t.Parallel()
	c := NewClient(Options{})
	g, ok := c.Transport.(*schemeGuard)
	require.True(t, ok)
	assert.Nil(t, g.next.Proxy)
	assert.Equal(t, DefaultTimeout, c.Timeout)
	assert.Equal(t, DefaultTLSHandshakeTimeout, g.next.TLSHandshakeTimeout)
	assert.Equal(t, DefaultResponseHeaderTimeout, g.next.ResponseHeaderTimeout)
}

func TestLoopbackRefusedByDefault(t *testing.T) {
	t.Parallel()
	srv, hits := countingServer(t)

	// Default options: the test server's port is neither 80 nor 443.
	_, err := get(t, NewClient(Options{}), srv.URL)
	requireBlocked(t, err)
	assert.ErrorIs(t, err, ErrBlockedPort)

	// Any port, but 127.0.0.1 is still loopback.
	_, err = get(t, NewClient(Options{AnyPort: true}), srv.URL)
	berr := requireBlocked(t, err)
	assert.NotErrorIs(t, err, ErrBlockedPort)
	assert.Equal(t, srv.Listener.Addr().String(), berr.Address)

	assert.Zero(t, hits.Load(), "the server must receive nothing")
}

func TestAllowPrivateAndAllowPrefixes(t *testing.T) {
	t.Parallel()
	srv, hits := countingServer(t)

	for name, opts := range map[string]Options{
		"AllowPrivate":            {AllowPrivate: true},
		"AllowPrefixes + AnyPort": {AllowPrefixes: loopback, AnyPort: true},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := get(t, NewClient(opts), srv.URL)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
	assert.Equal(t, int64(2), hits.Load())

	// A prefix without AnyPort still enforces the port.
	_, err := get(t, NewClient(Options{AllowPrefixes: loopback}), srv.URL)
	requireBlocked(t, err)
	assert.ErrorIs(t, err, ErrBlockedPort)
}

func TestSpecialAddressesRefused(t *testing.T) {
	t.Parallel()
	// Each is refused in the dialer's Control hook, before connect(2), so no
	// packet leaves the machine.
	for _, raw := range []string{
		"http://127.0.0.1/",
		"http://[::ffff:127.0.0.1]/",
		"http://[::1]/",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.5/admin",
		"http://192.168.1.1/",
		"http://172.16.0.1/",
		"http://100.64.0.1/",
		"http://0.0.0.0/",
		"https://127.0.0.1/",
	} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			_, err := get(t, NewClient(Options{}), raw)
			requireBlocked(t, err)
		})
	}
}

func TestMappedLoopbackRefusedEvenWithIPv4Allowance(t *testing.T) {
	t.Parallel()
	c := NewClient(Options{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	_, err := get(t, c, "http://[::ffff:127.0.0.1]/")
	requireBlocked(t, err)
}

func TestRedirectToMetadataRefused(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	c := NewClient(Options{AllowPrefixes: loopback, AnyPort: true})
	_, err := get(t, c, srv.URL)
	requireBlocked(t, err)
	assert.Equal(t, int64(1), hits.Load(), "the first, allowed hop is served")
}

// hopServer redirects /hop/N to /hop/N-1 and answers /hop/0 with 200.
func hopServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if n == 0 {
			_, _ = w.Write([]byte("done"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirectLimit(t *testing.T) {
	t.Parallel()
	srv := hopServer(t)

	c := NewClient(Options{AllowPrivate: true})
	resp, err := get(t, c, srv.URL+"/hop/5")
	require.NoError(t, err)
	assert.Equal(t, "/hop/0", resp.Request.URL.Path)

	_, err = get(t, c, srv.URL+"/hop/6")
	require.ErrorIs(t, err, ErrTooManyRedirects)

	c = NewClient(Options{AllowPrivate: true, MaxRedirects: 2})
	_, err = get(t, c, srv.URL+"/hop/3")
	require.ErrorIs(t, err, ErrTooManyRedirects)

	c = NewClient(Options{AllowPrivate: true, MaxRedirects: -1})
	_, err = get(t, c, srv.URL+"/hop/1")
	require.ErrorIs(t, err, ErrTooManyRedirects)
}

func TestOnlyHTTPAndHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://example.com/file", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c := NewClient(Options{AllowPrivate: true})

	_, err := get(t, c, "ftp://example.com/file")
	require.ErrorIs(t, err, ErrUnsupportedScheme)

	_, err = get(t, c, srv.URL)
	require.ErrorIs(t, err, ErrUnsupportedScheme)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answer nothing until the client gives up
	}))
	t.Cleanup(srv.Close)

	c := NewClient(Options{AllowPrivate: true, Timeout: 50 * time.Millisecond})
	_, err := get(t, c, srv.URL)
	require.Error(t, err)
	var uerr *url.Error
	require.ErrorAs(t, err, &uerr)
	assert.True(t, uerr.Timeout())
	assert.NotErrorIs(t, err, ErrBlockedAddress)
}

// TestResolverIsUsedAndItsAnswersChecked: Options.Resolver looks up the
// names, and the guard checks the addresses it returns like any other.
func TestResolverIsUsedAndItsAnswersChecked(t *testing.T) {
	srv, hits := countingServer(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	resolver := fakedns.Resolver([4]byte{127, 0, 0, 1})
	target := fmt.Sprintf("http://public.example:%d/", port)

	_, err := get(t, NewClient(Options{Resolver: resolver, AnyPort: true}), target)
	requireBlocked(t, err)
	require.Zero(t, hits.Load())

	resp, err := get(t, NewClient(Options{Resolver: resolver, AnyPort: true, AllowPrefixes: loopback}), target)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, int64(1), hits.Load())
}
