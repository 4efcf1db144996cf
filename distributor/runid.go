package distributor

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"time"
)

func floatBits(f float64) uint64 { return math.Float64bits(f) }
func bitsFloat(b uint64) float64 { return math.Float64frombits(b) }

// runIDPattern is the only form a run id takes. A run id names the
// remote run directory <workdir>/runs/<id> that the end of a run kills
// processes in and removes: anything else ("..", ".", a path) is refused.
var runIDPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$`)

// ValidRunID reports whether id has the form newRunID makes.
func ValidRunID(id string) bool { return runIDPattern.MatchString(id) }

// newRunID names a run directory: sortable by time, unique enough.
func newRunID(now time.Time) string {
	return now.Format("20060102-150405") + fmt.Sprintf("-%04x", now.Nanosecond()>>10&0xffff)
}

// createPrivate creates (or truncates) a record file readable by its owner
// only: records hold job output and full command lines.
func createPrivate(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
}
