// Command testenv starts and manipulates a local cluster of OpenSSH sshd
// hosts for trying dsub, for its tests, and for fault injection.
//
//	testenv up -n 4            start 4 hosts; prints the state directory
//	testenv status             list the hosts
//	testenv kill|pause|unpause|partition|heal|restart HOST
//	testenv delay HOST 50ms    a WAN host, while the command runs
//	testenv down               remove hosts, network and state
//
// Every command takes --state DIR (default $DSUB_TESTENV_STATE, else
// ./.dsub-testenv/NAME) and --name NAME (default "dsub").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dsub-dev/dsub/testenv"
)

const usage = `usage: testenv COMMAND [flags] [HOST]

commands:
  up -n N        start N sshd hosts (builds the image first if missing)
  status         list the hosts of the cluster
  kill HOST      the host is gone: connections are refused
  pause HOST     the host hangs; TCP stays open
  unpause HOST   resume a paused host
  partition HOST drop all packets to and from the host
  heal HOST      undo partition
  restart HOST   bring the host back with the same host keys
  rekey HOST     bring the host back with NEW host keys (clients must refuse it)
  delay HOST D   add D (e.g. 50ms) to every round trip to the host, through
                 a proxy, for as long as this command runs (Ctrl-C ends it);
                 hosts.toml, ssh_config and known_hosts point at the proxy
  down           remove hosts, network and the state directory

flags (after the command):
  --state DIR    state directory (default $DSUB_TESTENV_STATE, else ./.dsub-testenv/NAME)
  --name NAME    cluster name (default dsub)
  --backend B    docker or process (up only; default: docker when available)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("see testenv -h")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("testenv "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 4, "number of hosts (up)")
	name := fs.String("name", "dsub", "cluster name")
	state := fs.String("state", "", "state directory")
	backend := fs.String("backend", "", "docker or process (up)")
	// Allow flags after the HOST argument: testenv kill h01 --state DIR.
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	dir := *state
	if dir == "" {
		dir = os.Getenv("DSUB_TESTENV_STATE")
	}
	if dir == "" {
		dir = filepath.Join(".dsub-testenv", *name)
	}
	switch cmd {
	case "up":
		start := time.Now()
		c, err := testenv.Up(ctx, testenv.Options{N: *n, Name: *name, Dir: dir, Backend: testenv.Backend(*backend), Log: stderr})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "testenv: %d hosts up (%s backend) in %s\n", len(c.Hosts), c.Backend, time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(stderr, "testenv: state in %s\n  hosts.toml:  %s\n  ssh_config:  %s   (try: ssh -F %s h01)\n",
			c.Dir, c.HostsFile, c.SSHConfig, c.SSHConfig)
		fmt.Fprintln(stdout, c.Dir)
		return nil
	}
	c, err := testenv.Load(dir)
	if err != nil {
		return err
	}
	c.SetLog(stderr)
	if cmd == "down" {
		return c.Down(ctx)
	}
	if cmd == "status" {
		for _, h := range c.Hosts {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", h.Name, h.HostPort(), h.User, h.Container)
		}
		return nil
	}
	if cmd == "delay" {
		return delay(ctx, c, pos, stderr)
	}
	faults := map[string]func(context.Context, string) error{
		"kill": c.Kill, "pause": c.Pause, "unpause": c.Unpause,
		"partition": c.Partition, "heal": c.Heal, "restart": c.Restart, "rekey": c.Rekey,
	}
	f, ok := faults[cmd]
	if !ok {
		return fmt.Errorf("testenv: unknown command %q: %w", cmd, errUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("testenv %s: name one HOST (%v): %w", cmd, c.Names(), errUsage)
	}
	return f(ctx, pos[0])
}

// delay keeps a host delayed until ctx ends (Ctrl-C), then points the
// client files back at it.
func delay(ctx context.Context, c *testenv.Cluster, pos []string, stderr io.Writer) error {
	if len(pos) != 2 {
		return fmt.Errorf("testenv delay: want HOST and a delay such as 50ms: %w", errUsage)
	}
	d, err := testenv.ParseDelay(pos[1])
	if err != nil {
		return fmt.Errorf("testenv delay %s %s: %v: %w", pos[0], pos[1], err, errUsage)
	}
	stop, err := c.Delay(ctx, pos[0], d)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "testenv: %s is %s further away through a proxy, until Ctrl-C; %s points at it\n", pos[0], d, c.HostsFile)
	<-ctx.Done()
	return stop()
}
