package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Delay makes host name a WAN host: from now on the cluster's client files
// (hosts.toml, ssh_config, known_hosts) point at a proxy on loopback that
// forwards every byte of its connections d/2 late in each direction, so a
// round trip gains d. Bandwidth is not limited; the order of bytes is kept.
//
// The proxy runs in this process, until stop is called or ctx ends; stop
// points the client files at the host again. Connections opened before
// Delay are not delayed.
//
// Latency is added by a proxy, not by netem in the container: netem needs
// the kernel's sch_netem module, which machines such as CI's may lack, and
// the container's NET_ADMIN capability.
func (c *Cluster) Delay(ctx context.Context, name string, d time.Duration) (stop func() error, err error) {
	h, err := c.Host(name)
	if err != nil {
		return nil, err
	}
	if d <= 0 {
		return nil, fmt.Errorf("testenv: delay %s: want a positive delay, got %s", name, d)
	}
	p, err := newDelayProxy(h.HostPort(), d/2)
	if err != nil {
		return nil, fmt.Errorf("testenv: delay %s: %w", name, err)
	}
	addr, port := h.Addr, h.Port
	tcp := p.ln.Addr().(*net.TCPAddr)
	h.Addr, h.Port = tcp.IP.String(), tcp.Port
	if err := c.writeClientFiles(); err != nil {
		p.close()
		h.Addr, h.Port = addr, port
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	go func() { <-pctx.Done(); p.close() }()
	var once sync.Once
	stop = func() error {
		var err error
		once.Do(func() {
			cancel()
			h.Addr, h.Port = addr, port
			err = c.writeClientFiles()
		})
		return err
	}
	return stop, nil
}

// delayProxy forwards connections to target, each direction late by one
// way's delay.
type delayProxy struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func newDelayProxy(target string, oneWay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, target: target, oneWay: oneWay, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *delayProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.relay(in)
	}
}

// track remembers a connection so close can end it; false once closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *delayProxy) relay(in net.Conn) {
	out, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !p.track(in) || !p.track(out) {
		in.Close()
		out.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(out, in) }()
	go func() { defer wg.Done(); p.pipe(in, out) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

// chunk is bytes read at a time, due for writing at a later time.
type chunk struct {
	due  time.Time
	data []byte
	eof  bool
}

// pipe copies src to dst, each read written oneWay after it was read. A
// reader and a writer share a queue, so a slow writer delays nothing but
// itself, as a long link's bytes in flight would.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 1024)
	go func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{due: time.Now().Add(p.oneWay), data: buf[:n]}
			}
			if err != nil {
				q <- chunk{due: time.Now().Add(p.oneWay), eof: true}
				close(q)
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if c.eof {
			closeWrite(dst)
			break
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			break
		}
	}
	go func() { // let the reader finish: it closes q once src ends
		for range q {
		}
	}()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

func (p *delayProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.Close()
	}
}

// ParseDelay reads a delay for `testenv delay`: a Go duration ("50ms") or
// plain milliseconds ("50").
func ParseDelay(s string) (time.Duration, error) {
	if ms, err := strconv.Atoi(s); err == nil {
		s = strconv.Itoa(ms) + "ms"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive duration such as 50ms")
	}
	return d, nil
}
