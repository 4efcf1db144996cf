package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readHealth reads the host's load and memory from Linux's /proc; ok is
// false where it cannot (another OS, or a /proc it cannot parse): the
// heartbeat then carries nothing. The kernel updates the load average
// every 5 s, as often as the agent beats at its default keepalive.
func readHealth() (HealthMsg, bool) {
	load, err1 := os.ReadFile("/proc/loadavg")
	mem, err2 := os.ReadFile("/proc/meminfo")
	if err1 != nil || err2 != nil {
		return HealthMsg{}, false
	}
	h, err := parseHealth(load, mem)
	return h, err == nil
}

// parseHealth parses /proc/loadavg ("0.52 0.58 0.59 1/467 12345") and
// /proc/meminfo ("MemTotal:  16318588 kB" lines). A kernel before 3.14
// has no MemAvailable: its free memory is then MemFree.
func parseHealth(loadavg, meminfo []byte) (HealthMsg, error) {
	var h HealthMsg
	f := strings.Fields(string(loadavg))
	if len(f) == 0 {
		return h, fmt.Errorf("loadavg: empty")
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return h, fmt.Errorf("loadavg: %w", err)
	}
	h.Load1 = load
	free := int64(-1)
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return h, fmt.Errorf("meminfo: %s: %w", k, err)
		}
		switch k {
		case "MemTotal":
			h.MemTotalKB = n
		case "MemAvailable":
			h.MemAvailKB = n
		case "MemFree":
			free = n
		}
	}
	if h.MemAvailKB == 0 && free >= 0 {
		h.MemAvailKB = free
	}
	if h.MemTotalKB == 0 {
		return h, fmt.Errorf("meminfo: no MemTotal")
	}
	return h, nil
}
