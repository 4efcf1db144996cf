// Command dsub distributes jobs and admin commands to many hosts over SSH.
// Nothing is installed on the hosts: a stock sshd and an account suffice.
//
// main is deliberately thin: it builds one root context, cancelled by the
// first SIGINT or SIGTERM (a second one exits at once), runs the command,
// and turns the error into an exit status in exactly one place (exitCode).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "dsub: interrupted; cleaning up (press Ctrl-C again to exit at once)")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "dsub: exiting now")
		os.Exit(exitInterrupted)
	}()
	stopProfile := startProfile(os.Getenv("DSUB_CPUPROFILE"))
	code := exitCode(ctx, run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr)
	cancel()
	stopProfile()
	os.Exit(code)
}

// startProfile writes a CPU profile to path (a developer aid: set
// DSUB_CPUPROFILE=file); "" does nothing.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsub: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "dsub: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
