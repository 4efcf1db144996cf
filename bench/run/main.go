// Command run benchmarks `dsub run` side by side with its peers, in one
// run on the same testenv hosts, and reports ratios:
//
//  1. 1,000 tiny jobs (echo N) on 4 hosts: dsub, GNU parallel -S without
//     and with a pre-warmed ControlMaster, and the floor: a bare Go loop of
//     sessions on persistent connections (no queue, logs or reduce).
//     Targets: >= 30x parallel, >= 6x parallel+ControlMaster, >= 0.7x floor.
//     Agent mode has its own floor: the same jobs through one dsub agent
//     per host, driven by agent.Client with nothing of the engine, whose
//     CPU per job is what the protocol and SSH alone cost the master.
//
//     1b. (wan) The same jobs with every host 50 ms RTT further away, through
//     testenv's delay proxy: agent and session, and agent without delay.
//     Targets: agent >= 5x session, and within 20% of its own speed
//     without delay. Each dsub row reports the master's CPU per job
//     (target <= 100 µs in agent mode).
//
//  2. A 50 MB program shipped to 4 hosts: dsub (cold cache) vs
//     parallel-scp; target: no slower. Then a re-run ships 0 bytes.
//
//  3. CPU-bound sharded primes on the hosts against one local run:
//     speedup and efficiency relative to the cores actually available.
//
//  4. (files) 1,000 jobs, each with a 1 MB input file transferred in and a
//     1 MB file returned (--transfer --return --cleanup), against the
//     same jobs without files. Target: >= 0.5x their throughput.
//
//  5. (ui) The master's CPU on the tiny jobs in agent mode, without --ui,
//     with --ui, and with --ui and headless Chromium showing the page.
//     Target: <= 1% more.
//
//  6. (report) A 100,000-job run's report: its size, and its render time
//     in Chromium. Target: < 2 s.
//
//     go run ./bench/run [-jobs 1000] [-rounds 3] [-upto 200000000]
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dsub-dev/dsub/bench/internal/benchutil"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/testenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "agentfloor" {
		if err := agentFloor(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "agentfloor:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "floor" {
		if err := floor(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	jobs := flag.Int("jobs", 1000, "tiny jobs")
	rounds := flag.Int("rounds", 3, "timed rounds per tool")
	uiProfiles := flag.Int("ui-profiles", 0, "ui: profiled runs (default: as many as rounds, at least 3)")
	upto := flag.Int("upto", 2000000000, "primes range for the CPU-bound benchmark")
	slots := flag.Int("slots", 4, "slots per host for the tiny-jobs benchmark (all tools)")
	only := flag.String("only", "jobs,wan,ship,primes,files,ui,report,startup", "benchmarks to run")
	fileJobs := flag.Int("file-jobs", 1000, "jobs of the files benchmark")
	fileSize := flag.Int("file-size", 1<<20, "bytes in and out per job in the files benchmark")
	rtt := flag.Duration("rtt", 50*time.Millisecond, "the round trip the wan benchmark adds to every host")
	compare := flag.String("compare", "", "another dsub binary (say, before a change) to time beside this one in the tiny-jobs benchmark")
	peers := flag.Bool("peers", true, "time GNU parallel in the tiny-jobs benchmark (-peers=false: dsub and the floor only)")
	flag.Parse()
	b := &bench{jobs: *jobs, rounds: *rounds, uiProfiles: *uiProfiles, upto: *upto, slots: *slots, compare: *compare, peers: *peers, rtt: *rtt, fileJobs: *fileJobs, fileSize: *fileSize}
	if err := b.run(*only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, out)
	}
	return nil
}

// bench is one benchmark run: its settings and the cluster, binaries and
// directories its parts share.
type bench struct {
	jobs, rounds, upto, slots int
	uiProfiles                int
	compare                   string
	peers                     bool
	rtt                       time.Duration
	fileJobs, fileSize        int

	c                  *testenv.Cluster
	tmp, logs          string
	dsub, primes, self string
	hostsSlots         string
	names              []string
}

func (b *bench) run(only string) error {
	ctx := context.Background()
	c, err := testenv.StartUnique(ctx, 4, os.Stderr)
	if err != nil {
		return err
	}
	defer c.Down(context.Background())
	b.c, b.names = c, c.Names()
	if b.tmp, err = os.MkdirTemp("", "dsub-bench-run"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	b.dsub, b.primes = filepath.Join(b.tmp, "dsub"), filepath.Join(b.tmp, "primes")
	b.self, _ = os.Executable()
	for bin, pkg := range map[string]string{b.dsub: "./cmd/dsub", b.primes: "./examples/primes"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v: %s", pkg, err, out)
		}
	}
	hostsToml, _ := os.ReadFile(c.HostsFile)
	b.hostsSlots = filepath.Join(b.tmp, "hosts.toml")
	os.WriteFile(b.hostsSlots, []byte(testenv.WithSlots(string(hostsToml), b.slots)), 0o600)
	// Records go where dsub puts them by default, the working directory:
	// on some machines /tmp is far slower at creating files.
	if b.logs, err = os.MkdirTemp(".", ".bench-logs-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.logs)
	if strings.Contains(only, "jobs") {
		b.tinyJobs(ctx)
	}
	if strings.Contains(only, "wan") {
		if err := b.wan(ctx, b.rtt); err != nil {
			return fmt.Errorf("wan: %w", err)
		}
	}
	if strings.Contains(only, "ship") {
		b.ship(ctx)
	}
	if strings.Contains(only, "primes") {
		b.primesCPU(ctx)
	}
	if strings.Contains(only, "files") {
		if err := b.files(ctx); err != nil {
			return fmt.Errorf("files: %w", err)
		}
	}
	if strings.Contains(only, "ui") {
		if err := b.ui(ctx); err != nil {
			return fmt.Errorf("ui: %w", err)
		}
	}
	if strings.Contains(only, "report") {
		if err := b.report(ctx); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if strings.Contains(only, "startup") {
		b.startup(ctx)
	}
	return nil
}

// tinyJobs: 1. many `echo N` jobs, dsub against GNU parallel and the floor.
func (b *bench) tinyJobs(ctx context.Context) {
	c, jobs, slots, tmp, logs, names, dsub, self := b.c, b.jobs, b.slots, b.tmp, b.logs, b.names, b.dsub, b.self
	rounds, hostsSlots := b.rounds, b.hostsSlots
	cmds := b.echoJobs()
	args := filepath.Join(tmp, "args.txt")
	var ab strings.Builder
	for i := 1; i <= jobs; i++ {
		fmt.Fprintf(&ab, "%d\n", i)
	}
	os.WriteFile(args, []byte(ab.String()), 0o600)
	cm := filepath.Join(tmp, "ssh_config_cm")
	base, _ := os.ReadFile(c.SSHConfig)
	os.WriteFile(cm, append(base, []byte(fmt.Sprintf("  ControlMaster auto\n  ControlPath %s/cm-%%C\n  ControlPersist 600\n", tmp))...), 0o600)
	var login []string
	for _, n := range names {
		login = append(login, fmt.Sprintf("%d/%s", slots, n))
	}
	countLines := func(out string) error {
		if n := strings.Count(out, "\n"); n != jobs {
			return fmt.Errorf("%d output lines, want %d", n, jobs)
		}
		return nil
	}
	dsubRun := func(name, bin string, extra ...string) benchutil.Tool {
		return benchutil.Tool{Name: name, Argv: append([]string{bin, "run", "--hosts", hostsSlots, "--ssh-config", "none", "--logs", logs, "--commands", cmds, "--reduce", "count"}, extra...),
			Check: func(out string) error {
				if strings.TrimSpace(out) != strconv.Itoa(jobs) {
					return fmt.Errorf("count %q", out)
				}
				return nil
			}}
	}
	tools := []benchutil.Tool{
		dsubRun("dsub run", dsub, "--launch", "session"),
		{Name: "parallel -S", Argv: []string{"parallel", "--will-cite", "-S", strings.Join(login, ","), "--ssh", "ssh -F " + c.SSHConfig, "-a", args, "echo", "{}"}, Check: countLines},
		{Name: "parallel -S +ControlMaster", Argv: []string{"parallel", "--will-cite", "-S", strings.Join(login, ","), "--ssh", "ssh -F " + cm, "-a", args, "echo", "{}"}, Check: countLines,
			Setup: func() error {
				for _, n := range names {
					if err := sh("ssh", "-F", cm, n, "true"); err != nil {
						return err
					}
				}
				return nil
			}},
		{Name: "floor (bare sessions)", Argv: []string{self, "floor", c.Dir, strconv.Itoa(jobs), strconv.Itoa(slots)}, Check: countLines},
	}
	tools = append(tools,
		dsubRun("dsub run --launch agent", dsub, "--launch", "agent"),
		benchutil.Tool{Name: "floor (bare agents)", Argv: []string{self, "agentfloor", c.Dir, strconv.Itoa(jobs), strconv.Itoa(slots)}, Check: countLines, Setup: b.shipAgentFloor},
		// The spawn limit of this machine, where the hosts share its cores.
		benchutil.Tool{Name: fmt.Sprintf("local xargs -P %d", len(names)*slots), Argv: []string{"sh", "-c",
			fmt.Sprintf("xargs -P %d -I{} sh -c 'echo {}' < %s", len(names)*slots, args)}, Check: countLines})
	if !b.peers {
		tools = append([]benchutil.Tool{tools[0], tools[3]}, tools[4:]...)
	}
	if b.compare != "" {
		tools = append(tools, dsubRun("dsub run ("+filepath.Base(b.compare)+")", b.compare))
	}
	res := benchutil.Run(ctx, tools, rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("1. %d tiny jobs on %d hosts, %d slots each", jobs, len(names), slots), "dsub run", res)
	d, _ := benchutil.Fastest(res, "dsub run")
	for _, r := range res[1:] {
		if r.Err == nil && r.Skipped == "" && d.Median() > 0 {
			fmt.Printf("   dsub throughput: %.1f jobs/s; %s: %.1f jobs/s; dsub is %.2fx its speed\n",
				float64(jobs)/d.Median().Seconds(), r.Tool, float64(jobs)/r.Median().Seconds(), r.Median().Seconds()/d.Median().Seconds())
		}
	}
	cpuPerJob(res, jobs)
	for _, n := range names {
		_ = exec.Command("ssh", "-F", cm, "-O", "exit", n).Run()
	}
}

// echoJobs writes the tiny jobs' commands file (echo N, for -jobs N)
// and returns its path.
func (b *bench) echoJobs() string {
	cmds := filepath.Join(b.tmp, "cmds.txt")
	var cb strings.Builder
	for i := 1; i <= b.jobs; i++ {
		fmt.Fprintf(&cb, "echo %d\n", i)
	}
	os.WriteFile(cmds, []byte(cb.String()), 0o600)
	return cmds
}

// cpuPerJob prints the master's own CPU per job for each dsub row: dsub
// runs no local child, so its process's CPU is the master's.
func cpuPerJob(res []benchutil.Result, jobs int) {
	for _, r := range res {
		if strings.HasPrefix(r.Tool, "dsub") && r.MedianCPU() > 0 {
			fmt.Printf("   %s: master CPU %.0f µs per job (%.2fs for %d jobs)\n", r.Tool, float64(r.MedianCPU().Microseconds())/float64(jobs), r.MedianCPU().Seconds(), jobs)
		}
	}
}

// wan: 1b. the tiny jobs again with every host rtt further away (through
// testenv's delay proxy), agent against session, and agent without delay
// in the same run for the fall in throughput.
func (b *bench) wan(ctx context.Context, rtt time.Duration) error {
	var stops []func() error
	defer func() {
		for _, stop := range stops {
			_ = stop()
		}
	}()
	// The rows without delay run between the delayed ones, while the
	// cluster's known_hosts names the proxies: give them their own copy.
	direct, err := b.directHosts()
	if err != nil {
		return err
	}
	for _, n := range b.names {
		stop, err := b.c.Delay(ctx, n, rtt)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	delayed, _ := os.ReadFile(b.c.HostsFile)
	hostsWAN := filepath.Join(b.tmp, "hosts-wan.toml")
	if err := os.WriteFile(hostsWAN, []byte(testenv.WithSlots(string(delayed), b.slots)), 0o600); err != nil {
		return err
	}
	cmds := filepath.Join(b.tmp, "cmds.txt")
	var cb strings.Builder
	for i := 1; i <= b.jobs; i++ {
		fmt.Fprintf(&cb, "echo %d\n", i)
	}
	os.WriteFile(cmds, []byte(cb.String()), 0o600)
	run := func(name, hosts, launch string) benchutil.Tool {
		return benchutil.Tool{Name: name, Argv: []string{b.dsub, "run", "--hosts", hosts, "--ssh-config", "none", "--logs", b.logs, "--commands", cmds, "--reduce", "count", "--launch", launch},
			Check: func(out string) error {
				if strings.TrimSpace(out) != strconv.Itoa(b.jobs) {
					return fmt.Errorf("count %q", out)
				}
				return nil
			}}
	}
	tag := rtt.String() + " RTT"
	tools := []benchutil.Tool{
		run("dsub agent, "+tag, hostsWAN, "agent"),
		run("dsub session, "+tag, hostsWAN, "session"),
		run("dsub agent, no delay", direct, "agent"),
	}
	res := benchutil.Run(ctx, tools, b.rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("1b. %d tiny jobs on %d hosts %s further away, %d slots each", b.jobs, len(b.names), rtt, b.slots), tools[0].Name, res)
	if res[0].Err == nil && res[1].Err == nil && res[2].Err == nil && len(res[0].Runs) > 0 {
		a, s, a0 := res[0].Median().Seconds(), res[1].Median().Seconds(), res[2].Median().Seconds()
		fmt.Printf("   with %s: agent %.1f jobs/s, session %.1f jobs/s: agent is %.2fx session; agent without delay %.1f jobs/s: the delay costs %.0f%% of its throughput\n",
			tag, float64(b.jobs)/a, float64(b.jobs)/s, s/a, float64(b.jobs)/a0, 100*(1-a0/a))
	}
	cpuPerJob(res, b.jobs)
	return nil
}

// directHosts writes a copy of the benchmark's hosts file whose
// known_hosts is a copy of the cluster's as it is now, before delays
// rewrite it.
func (b *bench) directHosts() (string, error) {
	kh, err := os.ReadFile(b.c.KnownHosts)
	if err != nil {
		return "", err
	}
	hosts, err := os.ReadFile(b.hostsSlots)
	if err != nil {
		return "", err
	}
	khCopy := filepath.Join(b.tmp, "known_hosts-direct")
	if err := os.WriteFile(khCopy, kh, 0o600); err != nil {
		return "", err
	}
	if !strings.Contains(string(hosts), b.c.KnownHosts) {
		return "", fmt.Errorf("%s does not name %s", b.hostsSlots, b.c.KnownHosts)
	}
	p := filepath.Join(b.tmp, "hosts-direct.toml")
	return p, os.WriteFile(p, []byte(strings.ReplaceAll(string(hosts), b.c.KnownHosts, khCopy)), 0o600)
}

// ship: 2. a big program to every host, cold and cached, against pscp.
func (b *bench) ship(ctx context.Context) {
	c, tmp, logs, names, dsub, rounds := b.c, b.tmp, b.logs, b.names, b.dsub, b.rounds
	big := filepath.Join(tmp, "big.sh")
	writeBig(big)
	fi, _ := os.Stat(big)
	hostList := filepath.Join(tmp, "hosts.txt")
	os.WriteFile(hostList, []byte(strings.Join(names, "\n")+"\n"), 0o600)
	clear := func() error {
		return sh(dsub, "exec", "--hosts", c.HostsFile, "--ssh-config", "none", "--", "rm -rf ~/.cache/dsub/bin ~/big.sh")
	}
	runArgs := []string{dsub, "run", "--hosts", c.HostsFile, "--ssh-config", "none", "--logs", logs, "--binary", big, "--shards", "4", "--reduce", "count"}
	tools := []benchutil.Tool{
		{Name: "dsub run (cold cache)", Argv: runArgs, Before: clear},
		{Name: "dsub run (cached)", Argv: runArgs}, // right after a cold run
		{Name: "parallel-scp -p 4", Argv: []string{"parallel-scp", "-p", "4", "-h", hostList, "-x", "-F " + c.SSHConfig, big, "big.sh"}, Before: clear},
	}
	res := benchutil.Run(ctx, tools, rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("2. ship a %.1f MB program to %d hosts", float64(fi.Size())/1e6, len(names)), "parallel-scp -p 4", res)
	fmt.Printf("   bytes uploaded by the last cached run: %d\n", lastUploaded(logs))
}

// primesCPU: 3. a CPU-bound job in 16 shards against one local process.
func (b *bench) primesCPU(ctx context.Context) {
	c, logs, dsub, primes, rounds, upto, names := b.c, b.logs, b.dsub, b.primes, b.rounds, b.upto, b.names
	u := strconv.Itoa(upto)
	tools := []benchutil.Tool{
		{Name: "local, 1 process", Argv: []string{primes, "count", "--shard", "0", "--of", "1", "--upto", u}},
		{Name: "dsub run, 16 shards", Argv: []string{dsub, "run", "--hosts", c.HostsFile, "--ssh-config", "none", "--logs", logs,
			"--binary", primes, "--shards", "16", "--reduce", "sum", "--", "count", "--shard", "{shard}", "--of", "{shards}", "--upto", u}},
	}
	res := benchutil.Run(ctx, tools, rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("3. count primes below %d: 16 shards over %d hosts vs one local process", upto, len(names)), "local, 1 process", res)
	if len(res[0].Runs) > 0 && len(res[1].Runs) > 0 {
		speedup := res[0].Median().Seconds() / res[1].Median().Seconds()
		cores := runtime.NumCPU()
		fmt.Printf("   speedup %.2fx on %d cores actually available (the hosts share this machine): efficiency %.0f%%\n", speedup, cores, 100*speedup/float64(cores))
	}
}

// files: 4. jobs with a file in and a file out, against the same jobs
// without files. The inputs (random, so no cache helps) live under the
// work tree, where creating files is fast.
func (b *bench) files(ctx context.Context) error {
	dir := filepath.Join(b.logs, "inputs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var list strings.Builder
	buf := make([]byte, b.fileSize)
	for i := 1; i <= b.fileJobs; i++ {
		rand.Read(buf)
		p := filepath.Join(dir, fmt.Sprintf("in%05d.dat", i))
		if err := os.WriteFile(p, buf, 0o600); err != nil {
			return err
		}
		list.WriteString(p + "\n")
	}
	inputs := filepath.Join(b.tmp, "inputs.txt")
	os.WriteFile(inputs, []byte(list.String()), 0o600)
	out := filepath.Join(b.logs, "returned")
	clear := func() error { return os.RemoveAll(out) }
	count := func(stdout string) error {
		if strings.TrimSpace(stdout) != strconv.Itoa(b.fileJobs) {
			return fmt.Errorf("count %q", stdout)
		}
		return nil
	}
	base := []string{b.dsub, "run", "--hosts", b.hostsSlots, "--ssh-config", "none", "--logs", b.logs, "--args-file", inputs, "--reduce", "count"}
	withFiles := append(append([]string(nil), base...), "--transfer", "--return", "{/.}.out", "--return-dir", out, "--cleanup", "--",
		"cp {} {/.}.out")
	tools := []benchutil.Tool{
		{Name: "dsub run, no files", Argv: append(append([]string(nil), base...), "--", "true {/}"), Check: count},
		{Name: "dsub run --transfer --return --cleanup", Argv: withFiles, Before: clear, Check: func(stdout string) error {
			if err := count(stdout); err != nil {
				return err
			}
			got, _ := filepath.Glob(filepath.Join(out, "*.out"))
			if len(got) != b.fileJobs {
				return fmt.Errorf("%d files returned, want %d", len(got), b.fileJobs)
			}
			return nil
		}},
	}
	res := benchutil.Run(ctx, tools, b.rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("4. %d jobs with %.1f MB in and out each, on %d hosts, %d slots each", b.fileJobs, float64(b.fileSize)/1e6, len(b.names), b.slots), "dsub run, no files", res)
	if len(res[0].Runs) > 0 && len(res[1].Runs) > 0 {
		ratio := res[0].Median().Seconds() / res[1].Median().Seconds()
		mb := float64(2*b.fileSize*b.fileJobs) / 1e6 / res[1].Median().Seconds()
		fmt.Printf("   with files: %.2fx the throughput without (target >= 0.5x); %.0f MB/s moved\n", ratio, mb)
	}
	return nil
}

// writeBig writes a ~50 MB shell script: it runs `echo shipped; exit 0`
// and never reads the random padding after it.
func writeBig(p string) {
	pad := make([]byte, 37<<20) // base64 grows it to ~50 MB
	rand.Read(pad)
	os.WriteFile(p, []byte("#!/bin/sh\necho shipped\nexit 0\n# "+base64.StdEncoding.EncodeToString(pad)+"\n"), 0o755)
}

// lastUploaded sums bytes_uploaded in the newest run.json under logs.
func lastUploaded(logs string) int64 {
	dirs, _ := filepath.Glob(filepath.Join(logs, "*"))
	if len(dirs) == 0 {
		return -1
	}
	m, err := records.ReadManifest(records.RunDir(dirs[len(dirs)-1]))
	if err != nil {
		return -1
	}
	var n int64
	for _, h := range m.Hosts {
		n += h.Sent
	}
	return n
}

// floor runs `echo N` jobs as bare sessions on one persistent connection
// per host, slots workers per host: no queue, no logs, no reduce.
func floor(args []string) error {
	c, jobs, slots, dial, err := floorArgs(args)
	if err != nil {
		return err
	}
	next := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, h := range c.Hosts {
		cl, err := dial(h)
		if err != nil {
			return err
		}
		defer cl.Close()
		for w := 0; w < slots; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range next {
					var out []byte
					var err error
					for try := 0; try < 50; try++ { // refused opens are back-pressure
						var s *ssh.Session
						if s, err = cl.NewSession(); err == nil {
							out, err = s.Output("echo " + strconv.Itoa(n))
							s.Close()
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					os.Stdout.Write(out)
					mu.Unlock()
				}
			}()
		}
	}
	for i := 1; i <= jobs; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}

// floorArgs reads a floor's arguments (the cluster's state directory,
// the jobs, the slots per host) and makes its dialer.
func floorArgs(args []string) (c *testenv.Cluster, jobs, slots int, dial func(*testenv.Host) (*ssh.Client, error), err error) {
	if len(args) != 3 {
		return nil, 0, 0, nil, fmt.Errorf("want DIR JOBS SLOTS, got %q", args)
	}
	if c, err = testenv.Load(args[0]); err != nil {
		return nil, 0, 0, nil, err
	}
	jobs, _ = strconv.Atoi(args[1])
	slots, _ = strconv.Atoi(args[2])
	dial, err = dialer(c)
	return c, jobs, slots, dial, err
}

// dialer returns a function that connects to a testenv host with the
// cluster's key, checking its host key.
func dialer(c *testenv.Cluster) (func(h *testenv.Host) (*ssh.Client, error), error) {
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, err
	}
	cb, err := knownhosts.New(c.KnownHosts)
	if err != nil {
		return nil, err
	}
	return func(h *testenv.Host) (*ssh.Client, error) {
		return ssh.Dial("tcp", h.HostPort(), &ssh.ClientConfig{User: h.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: cb, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 10 * time.Second})
	}, nil
}
