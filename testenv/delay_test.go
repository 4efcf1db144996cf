package testenv

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"regexp"
	"testing"
	"time"
)

// Delay's proxy adds at least its delay to every round trip, keeps the
// bytes and their order, and stop points the client files back at the
// host. (A lower bound only: a round trip can take longer on a busy
// machine, never less.)
func TestDelayAddsRoundTrip(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	tcp := echo.Addr().(*net.TCPAddr)
	c := &Cluster{Name: "t", Dir: t.TempDir(), Hosts: []*Host{{Name: "h01", Addr: "127.0.0.1", Port: tcp.Port, User: "dsub", HostKey: "ssh-ed25519 AAAA"}}}
	c.setPaths()
	if err := c.writeClientFiles(); err != nil {
		t.Fatal(err)
	}
	const d = 60 * time.Millisecond
	stop, err := c.Delay(context.Background(), "h01", d)
	if err != nil {
		t.Fatal(err)
	}
	addr := hostsAddress(t, c)
	if addr == echo.Addr().String() {
		t.Fatalf("hosts.toml still names the host itself: %s", addr)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for i, line := range []string{"one\n", "two\n", "three\n"} {
		start := time.Now()
		if _, err := conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		rtt := time.Since(start)
		if err != nil || got != line {
			t.Fatalf("round trip %d: %q, %v", i, got, err)
		}
		if rtt < d {
			t.Errorf("round trip %d took %s, less than the %s delay", i, rtt, d)
		}
		t.Logf("round trip %d: %s", i, rtt)
	}
	if _, err := c.Delay(context.Background(), "h09", d); err == nil {
		t.Error("delay of an unknown host accepted")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := hostsAddress(t, c); got != echo.Addr().String() {
		t.Errorf("after stop hosts.toml names %s, want %s", got, echo.Addr())
	}
}

func hostsAddress(t *testing.T, c *Cluster) string {
	t.Helper()
	b, err := os.ReadFile(c.HostsFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`address = "([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no address in %s", b)
	}
	return string(m[1])
}

func TestParseDelay(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"50ms", 50 * time.Millisecond, true}, {"50", 50 * time.Millisecond, true}, {"1s", time.Second, true}, {"0", 0, false}, {"-5ms", 0, false}, {"fast", 0, false}} {
		got, err := ParseDelay(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDelay(%q) = %s, %v", tc.in, got, err)
		}
	}
}
