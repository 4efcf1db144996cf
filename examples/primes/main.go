// Command primes is dsub's example compute program: statically buildable
// (CGO_ENABLED=0), it prints its result as the last line of stdout and
// reports progress as "dsub:progress F" lines on stderr.
//
//	primes sum --below N                  sum of the primes below N
//	primes count --shard I --of M --upto R  primes in shard I of M of [0, R)
//
// The count shards split [0, R) into M contiguous ranges, so summing the
// counts of all shards gives π(R): 664579 for R = 10,000,000 (the tests),
// 50847534 for R = 1,000,000,000 (make demo).
package main

import (
	"flag"
	"fmt"
	"math"
	"math/big"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "primes:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: primes sum --below N | primes count --shard I --of M --upto R")
	}
	fs := flag.NewFlagSet("primes "+args[0], flag.ContinueOnError)
	below := fs.Uint64("below", 0, "sum: primes below N")
	shard := fs.Uint64("shard", 0, "count: shard index, 0-based")
	of := fs.Uint64("of", 1, "count: number of shards")
	upto := fs.Uint64("upto", 0, "count: range end R (exclusive)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "sum":
		sum := new(big.Int)
		var p big.Int
		segments(0, *below, func(n uint64) { sum.Add(sum, p.SetUint64(n)) })
		fmt.Println(sum)
	case "count":
		if *of == 0 || *shard >= *of {
			return fmt.Errorf("--shard must be in [0, --of)")
		}
		lo := *upto / *of * *shard + min(*shard, *upto%*of)
		hi := lo + *upto / *of
		if *shard < *upto%*of {
			hi++
		}
		var count uint64
		segments(lo, hi, func(uint64) { count++ })
		fmt.Println(count)
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	return nil
}

// segments calls f for every prime in [lo, hi), with a segmented sieve of
// Eratosthenes, reporting progress per segment.
func segments(lo, hi uint64, f func(uint64)) {
	if hi <= 2 || lo >= hi {
		progress(1)
		return
	}
	root := uint64(math.Sqrt(float64(hi))) + 1
	base := smallPrimes(root)
	const seg = 1 << 18
	total := hi - lo
	for start := lo; start < hi; start += seg {
		end := min(start+seg, hi)
		composite := make([]bool, end-start)
		for _, p := range base {
			if p*p >= end {
				break
			}
			m := max(p*p, (start+p-1)/p*p)
			for ; m < end; m += p {
				composite[m-start] = true
			}
		}
		for i, c := range composite {
			if n := start + uint64(i); !c && n >= 2 {
				f(n)
			}
		}
		progress(float64(end-lo) / float64(total))
	}
}

func smallPrimes(n uint64) []uint64 {
	comp := make([]bool, n+1)
	var ps []uint64
	for i := uint64(2); i <= n; i++ {
		if !comp[i] {
			ps = append(ps, i)
			for j := i * i; j <= n; j += i {
				comp[j] = true
			}
		}
	}
	return ps
}

var lastProgress = -1.0

func progress(f float64) {
	if f-lastProgress >= 0.05 || f == 1 {
		lastProgress = f
		fmt.Fprintf(os.Stderr, "dsub:progress %.3f\n", f)
	}
}
