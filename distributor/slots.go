package distributor

import (
	"strconv"
	"strings"

	"github.com/dsub-dev/dsub/remote"
)

// takeSlot gives a starting job the lowest free slot of h, 1-based, for
// {%}. A host holds no more jobs than its slots when slot numbers are
// asked for (no window), so one is free; should one not be, the number
// goes past the slots rather than repeat one in use.
func (h *runHost) takeSlot() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, busy := range h.inSlot {
		if !busy {
			h.inSlot[i] = true
			return i + 1
		}
	}
	h.inSlot = append(h.inSlot, true)
	return len(h.inSlot)
}

// freeSlot frees slot n of h.
func (h *runHost) freeSlot(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inSlot[n-1] = false
}

// putSlot puts slot n in for SlotMark in cmd's command line.
func putSlot(cmd *remote.Cmd, n int) {
	s := strconv.Itoa(n)
	cmd.Shell = strings.ReplaceAll(cmd.Shell, SlotMark, s)
	for i, a := range cmd.Argv {
		cmd.Argv[i] = strings.ReplaceAll(a, SlotMark, s)
	}
}
