// Package dns is a fake DNS server for tests: a *net.Resolver whose
// queries are answered in process, over an in-memory stream connection
// speaking the real DNS wire format.
package dns

import (
	"context"
	"io"
	"net"

	"golang.org/x/net/dns/dnsmessage"
)

// Resolver returns a resolver that answers every A query with ip (AAAA and
// other types with no records).
func Resolver(ip [4]byte) *net.Resolver {
	return resolver(func(b *dnsmessage.Builder, q dnsmessage.Question) {
		if q.Type == dnsmessage.TypeA {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: ip})
		}
	}, dnsmessage.RCodeSuccess)
}

// NXDomain returns a resolver that answers every query "no such host", as
// a real resolver does for an unknown name; lookup errors still name the
// system's resolver address, as they do in production.
func NXDomain() *net.Resolver {
	return resolver(nil, dnsmessage.RCodeNameError)
}

// resolver answers each query with rcode and, when answer is set, the
// records it adds for each question.
func resolver(answer func(*dnsmessage.Builder, dnsmessage.Question), rcode dnsmessage.RCode) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		client, server := net.Pipe()
		go serve(server, answer, rcode)
		return client, nil
	}}
}

// serve answers the queries of one stream connection (each message
// prefixed with its 2-byte length) until it closes.
func serve(conn net.Conn, answer func(*dnsmessage.Builder, dnsmessage.Question), rcode dnsmessage.RCode) {
	defer conn.Close()
	for {
		var size [2]byte
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return
		}
		q := make([]byte, int(size[0])<<8|int(size[1]))
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(q)
		if err != nil {
			return
		}
		questions, err := p.AllQuestions()
		if err != nil {
			return
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true, RCode: rcode})
		_ = b.StartQuestions()
		for _, qq := range questions {
			_ = b.Question(qq)
		}
		_ = b.StartAnswers()
		if answer != nil {
			for _, qq := range questions {
				answer(&b, qq)
			}
		}
		msg, err := b.Finish()
		if err != nil {
			return
		}
		if _, err := conn.Write(append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)); err != nil {
			return
		}
	}
}
