// Command engine measures dsub's engine alone, in process, on fakehost
// hosts: many hosts × slots, many zero-work jobs, every record written
// (journal, joblogs, output streams). It reports jobs/s, the master's CPU
// per job (rusage, user+sys) and its peak RSS. Nothing crosses a
// network or forks: what it measures is the engine's own cost per job.
//
//	go run ./bench/engine -hosts 1000 -slots 10 -jobs 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

func main() {
	hosts := flag.Int("hosts", 1000, "fake hosts")
	slots := flag.Int("slots", 10, "slots per host")
	jobs := flag.Int("jobs", 100000, "zero-work jobs")
	prof := flag.String("cpuprofile", "", "write a CPU profile to `FILE`")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*hosts, *slots, *jobs); err != nil {
		fmt.Fprintln(os.Stderr, "engine:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func printJob(ctx context.Context, p *fakehost.Proc) error {
	p.Printf("%d\n", p.Job)
	return nil
}

func run(nh, slots, jobs int) error {
	var ms []*distributor.Member
	for i := 1; i <= nh; i++ {
		name := fmt.Sprintf("f%04d", i)
		h := fakehost.New(name, fakehost.Options{Job: printJob})
		ms = append(ms, &distributor.Member{Inv: &inventory.Host{Name: name, Address: name, Slots: slots, Workdir: "~/.dsub"}, Host: h, Timeout: time.Minute})
	}
	c, err := distributor.NewClusterOf(ms)
	if err != nil {
		return err
	}
	defer c.Close()
	logs, err := os.MkdirTemp("", "dsub-engine-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logs)
	red, _ := distributor.NewReducer("sum")
	ctx := context.Background()
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	t0 := time.Now()
	r, err := c.Start(ctx, distributor.RunOptions{LogsDir: logs, Reducer: red, Total: jobs})
	if err != nil {
		return err
	}
	go func() {
		for j := 1; j <= jobs; j++ {
			if err := r.Submit(ctx, distributor.JobSpec{Shell: "job " + strconv.Itoa(j)}); err != nil {
				fmt.Fprintln(os.Stderr, "engine: submit:", err)
				break
			}
		}
		r.Close()
	}()
	st, result, err := r.Wait()
	wall := time.Since(t0)
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if err != nil {
		return err
	}
	want := fmt.Sprint(jobs * (jobs + 1) / 2)
	if result != want || st.Succeeded != jobs {
		return fmt.Errorf("result %s, %d succeeded; want %s, %d", result, st.Succeeded, want, jobs)
	}
	cpu := tv(after.Utime) - tv(before.Utime) + tv(after.Stime) - tv(before.Stime)
	fmt.Printf("engine: %d hosts x %d slots, %d jobs: wall %.2fs, %.0f jobs/s, master CPU %.1f µs/job (%.2fs), peak RSS %.0f MB\n",
		nh, slots, jobs, wall.Seconds(), float64(jobs)/wall.Seconds(), cpu.Seconds()*1e6/float64(jobs), cpu.Seconds(), float64(after.Maxrss)/1024)
	return nil
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}
