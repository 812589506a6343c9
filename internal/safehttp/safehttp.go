// Package safehttp builds HTTP clients for fetching user-supplied URLs from
// inside the server without opening a path to internal services (SSRF).
//
// The guard runs in the dialer's Control hook, so it sees the resolved
// ip:port of every connection the client makes: the first request, every
// redirect and every re-resolution of a name (DNS rebinding). By default it
// allows only public unicast addresses on ports 80 and 443; loopback,
// private, link-local, carrier-grade NAT, multicast and the other IANA
// special-purpose ranges are refused before any packet is sent.
//
// The client never uses a proxy (a proxy would hide the real destination
// from the dialer), speaks only http and https, and follows a bounded number
// of redirects.
package safehttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// Defaults for the zero values of Options.
const (
	// DefaultTimeout bounds a whole request: connecting, redirects and
	// reading the body.
	DefaultTimeout = 30 * time.Second
	// DefaultDialTimeout bounds establishing one TCP connection.
	DefaultDialTimeout = 5 * time.Second
	// DefaultTLSHandshakeTimeout bounds one TLS handshake.
	DefaultTLSHandshakeTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers
	// once the request is written.
	DefaultResponseHeaderTimeout = 10 * time.Second
	// DefaultMaxRedirects is how many redirects a request may follow.
	DefaultMaxRedirects = 5
)

// ErrBlockedAddress matches (with errors.Is) every connection the guard
// refuses, whatever the reason, even when wrapped in *url.Error and
// *net.OpError. Use errors.As with *BlockedError for the details.
var ErrBlockedAddress = errors.New("destination not allowed")

// ErrBlockedPort matches, in addition to ErrBlockedAddress, the refusals
// caused by the destination port rather than the address.
var ErrBlockedPort = errors.New("destination port not allowed")

// ErrTooManyRedirects is returned (wrapped in *url.Error) when a request
// would follow more redirects than Options.MaxRedirects allows.
var ErrTooManyRedirects = errors.New("too many redirects")

// ErrUnsupportedScheme is returned (wrapped in *url.Error) for a request or
// redirect whose URL scheme is not http or https.
var ErrUnsupportedScheme = errors.New("unsupported URL scheme")

// BlockedError describes one connection refused by the guard. It matches
// ErrBlockedAddress, and ErrBlockedPort when the port was the reason.
//
// Its message names the refused address, which may be the result of a DNS
// lookup: do not show it to a user who only supplied a host name.
type BlockedError struct {
	// Network is the dialer's network, such as "tcp4".
	Network string
	// Address is the resolved ip:port that was refused.
	Address string
	// Err is the guard's reason.
	Err error
}

// Error describes the refusal, including the address.
func (e *BlockedError) Error() string {
	return fmt.Sprintf("safehttp: connection to %s refused: %v", e.Address, e.Err)
}

// Unwrap returns the guard's reason.
func (e *BlockedError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBlockedAddress, or ErrBlockedPort for a
// refusal caused by the port.
func (e *BlockedError) Is(target error) bool {
	switch target {
	case ErrBlockedAddress:
		return true
	case ErrBlockedPort:
		return errors.Is(e.Err, ssrf.ErrProhibitedPort)
	}
	return false
}

// Options configures NewClient. The zero value is the safe production
// setting.
type Options struct {
	// AllowPrivate turns the guard off: any address (loopback, private,
	// link-local…) and any port may be reached. For tests and local use
	// only; never enable it for a service that fetches user-supplied URLs.
	AllowPrivate bool
	// AllowPrefixes lists address prefixes (IPv4 or IPv6) allowed even
	// though the guard would deny them, such as 127.0.0.1/32 for a test
	// server. Every other address is still checked. Defaults to none.
	AllowPrefixes []netip.Prefix
	// AnyPort allows every destination port. Defaults to false: only 80
	// and 443.
	AnyPort bool
	// Timeout bounds a whole request, redirects and body included (it is
	// http.Client.Timeout). Defaults to DefaultTimeout; negative means no
	// limit other than the request's context.
	Timeout time.Duration
	// MaxRedirects is how many redirects a request may follow; one more is
	// an error wrapping ErrTooManyRedirects. Defaults to DefaultMaxRedirects;
	// negative means that any redirect is an error.
	MaxRedirects int
	// DialTimeout bounds establishing a TCP connection. Defaults to
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds a TLS handshake. Defaults to
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers. Defaults
	// to DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// Resolver looks up host names. Defaults to net.DefaultResolver. The
	// guard checks the addresses it returns like any other.
	Resolver *net.Resolver
}

func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	} else if o.Timeout < 0 {
		o.Timeout = 0
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	} else if o.MaxRedirects < 0 {
		o.MaxRedirects = 0
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	return o
}

// NewClient returns an *http.Client guarded as Options says. The client is
// safe for concurrent use; share one rather than building one per request.
func NewClient(opts Options) *http.Client {
	opts = opts.withDefaults()
	dialer := &net.Dialer{
		Timeout:   opts.DialTimeout,
		KeepAlive: 30 * time.Second,
		Control:   control(opts),
		Resolver:  opts.Resolver,
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would hide the destination from the guard
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   opts.TLSHandshakeTimeout,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   2,
	}
	maxRedirects := opts.MaxRedirects
	return &http.Client{
		Transport: &schemeGuard{next: transport},
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("%w: stopped after %d", ErrTooManyRedirects, maxRedirects)
			}
			return checkScheme(req)
		},
	}
}

// control returns the dialer's Control hook, or nil when nothing is checked.
func control(opts Options) func(network, address string, c syscall.RawConn) error {
	if opts.AllowPrivate {
		return nil
	}
	var guardOpts []ssrf.Option
	var v4, v6 []netip.Prefix
	for _, p := range opts.AllowPrefixes {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	if len(v4) > 0 {
		guardOpts = append(guardOpts, ssrf.WithAllowedV4Prefixes(v4...))
	}
	if len(v6) > 0 {
		guardOpts = append(guardOpts, ssrf.WithAllowedV6Prefixes(v6...))
	}
	if opts.AnyPort {
		guardOpts = append(guardOpts, ssrf.WithAnyPort())
	}
	guard := ssrf.New(guardOpts...)
	return func(network, address string, c syscall.RawConn) error {
		if err := guard.Safe(network, address, c); err != nil {
			return &BlockedError{Network: network, Address: address, Err: err}
		}
		return nil
	}
}

// schemeGuard refuses requests whose scheme is not http or https before
// they reach the transport.
type schemeGuard struct {
	next *http.Transport
}

// RoundTrip checks the scheme and passes the request on.
func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := checkScheme(req); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return g.next.RoundTrip(req)
}

// CloseIdleConnections closes the transport's idle connections, so that
// http.Client.CloseIdleConnections works through the guard.
func (g *schemeGuard) CloseIdleConnections() { g.next.CloseIdleConnections() }

func checkScheme(req *http.Request) error {
	if req.URL == nil {
		return fmt.Errorf("%w: missing URL", ErrUnsupportedScheme)
	}
	switch req.URL.Scheme {
	case "http", "https":
		return nil
	}
	return fmt.Errorf("%w: %q", ErrUnsupportedScheme, req.URL.Scheme)
}
