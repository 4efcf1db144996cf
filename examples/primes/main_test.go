package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func output(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PRIMES_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("primes %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestMain(m *testing.M) {
	if os.Getenv("PRIMES_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSum(t *testing.T) {
	// Parallel Python's sum_primes: the sum of primes below 2,000,000.
	if got := output(t, "sum", "--below", "2000000"); got != "142913828922" {
		t.Errorf("sum below 2e6 = %s", got)
	}
	if got := output(t, "sum", "--below", "10"); got != "17" {
		t.Errorf("sum below 10 = %s", got)
	}
}

func TestShardsAddUp(t *testing.T) {
	for _, m := range []int{1, 3, 16} {
		total := 0
		for i := 0; i < m; i++ {
			n, err := strconv.Atoi(output(t, "count", "--shard", strconv.Itoa(i), "--of", strconv.Itoa(m), "--upto", "1000003"))
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total != 78498 { // π(1,000,003) = π(10^6) = 78498
			t.Errorf("%d shards: total %d, want 78498", m, total)
		}
	}
}
