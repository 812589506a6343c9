// Package redisconn connects to Redis: a server named by a URL (redis:// or
// rediss:// for TLS, as Upstash serves it) or, with no URL, an in-process
// Redis (miniredis) on a loopback port for the embedded default.
package redisconn

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Conn is a Redis client and, for the embedded default, the server it owns.
type Conn struct {
	Client *redis.Client
	// Embedded is the in-process server, nil for a real Redis.
	Embedded *miniredis.Miniredis
}

// Open connects to the Redis at rawURL, or starts an in-process one when
// rawURL is empty, and checks that it answers.
func Open(ctx context.Context, rawURL string) (*Conn, error) {
	c := &Conn{}
	var opts *redis.Options
	if rawURL == "" {
		m := miniredis.NewMiniRedis()
		// TTLs follow the wall clock, as on a real server.
		m.ClockTTL(true)
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("redis: start in-process server: %w", err)
		}
		c.Embedded = m
		opts = &redis.Options{Addr: m.Addr()}
	} else {
		var err error
		opts, err = redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: REDIS_URL: %w", err)
		}
	}
	// Calls end at their context's deadline, not only at the read and
	// write timeouts: the engine's deadlines hold with a hung Redis.
	opts.ContextTimeoutEnabled = true
	c.Client = redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Client.Ping(pingCtx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis: connect: %w", err)
	}
	return c, nil
}

// Close closes the client and stops the in-process server, if any.
func (c *Conn) Close() error {
	var err error
	if c.Client != nil {
		err = c.Client.Close()
	}
	if c.Embedded != nil {
		c.Embedded.Close()
	}
	return err
}

// Describe names the Redis without credentials, for logs.
func Describe(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "redis"
	}
	if u.Scheme == "rediss" {
		return "redis at " + u.Host + " (TLS)"
	}
	return "redis at " + u.Host
}
