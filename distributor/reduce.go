package distributor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// Reducer folds job results into one. Add is called once per successful
// job, in completion order; Result is called once at the end.
type Reducer interface {
	Add(job int, value json.RawMessage) error
	Result(ctx context.Context) (string, error)
}

// NeedsResult reports whether red needs each job's result line: a job
// that prints none then fails. Without a reducer, or to count, a job that
// exits 0 succeeds, output or not, as with GNU parallel.
func NeedsResult(red Reducer) bool {
	if red == nil {
		return false
	}
	o, ok := red.(interface{ ResultOptional() bool })
	return !ok || !o.ResultOptional()
}

// NewReducer returns the built-in reducer called name: sum, min, max,
// count, concat, list or none.
func NewReducer(name string) (Reducer, error) {
	switch name {
	case "sum", "min", "max":
		return &numReducer{op: name}, nil
	case "count":
		return &countReducer{}, nil
	case "concat", "list", "none":
		return &orderedReducer{kind: name, vals: map[int]json.RawMessage{}}, nil
	}
	return nil, fmt.Errorf("unknown reduce %q (want sum, min, max, count, concat, list or none)", name)
}

// numReducer is exact: integers of any size with math/big, decimals as
// rationals printed with as many places as the most precise input. When
// the results are JSON objects it folds per key, recursively (a keyed
// reduce: each job maps, the master reduces by key), into one object with
// sorted keys. Results must be all numbers or all objects.
type numReducer struct {
	op       string
	scalar   *numAcc  // the results are numbers
	keyed    *keyNode // the results are objects
	firstJob int      // the job whose result set which
}

func (r *numReducer) Add(job int, v json.RawMessage) error {
	if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '{' {
		if r.scalar != nil {
			return fmt.Errorf("reduce %s: the result is a JSON object, but job %d's was a number: results must be all numbers or all objects", r.op, r.firstJob)
		}
		p, err := parseKeyed(t, "")
		if err == nil && r.keyed != nil {
			err = r.keyed.fits(p, "")
		}
		if err != nil {
			return fmt.Errorf("reduce %s: %w", r.op, err)
		}
		if r.keyed == nil {
			r.keyed, r.firstJob = &keyNode{}, job
		}
		r.keyed.fold(r.op, p)
		return nil
	}
	x, places, err := parseNumber(v)
	if err != nil {
		return fmt.Errorf("reduce %s: result %s is not a number", r.op, truncate(string(v), 80))
	}
	if r.keyed != nil {
		return fmt.Errorf("reduce %s: the result is a number, but job %d's was a JSON object: results must be all numbers or all objects", r.op, r.firstJob)
	}
	if r.scalar == nil {
		r.scalar, r.firstJob = &numAcc{}, job
	}
	r.scalar.fold(r.op, x, places)
	return nil
}

func (r *numReducer) Result(context.Context) (string, error) {
	switch {
	case r.keyed != nil:
		var b strings.Builder
		r.keyed.write(&b)
		return b.String(), nil
	case r.scalar != nil:
		return r.scalar.String(), nil
	case r.op == "sum":
		return "0", nil
	}
	return "", fmt.Errorf("reduce %s: no results", r.op)
}

// numAcc is one exact number being folded.
type numAcc struct {
	x      *big.Rat
	places int
}

func (a *numAcc) fold(op string, x *big.Rat, places int) {
	switch {
	case a.x == nil:
		a.x, a.places = x, places
	case op == "sum":
		a.x.Add(a.x, x)
		a.places = max(a.places, places)
	case op == "min" && x.Cmp(a.x) < 0, op == "max" && x.Cmp(a.x) > 0:
		// min and max are one of the results: printed as it was.
		a.x, a.places = x, places
	}
}

func (a *numAcc) String() string {
	if a.x.IsInt() && a.places == 0 {
		return a.x.Num().String()
	}
	return a.x.FloatString(a.places)
}

// parseNumber accepts a JSON number, or a JSON string holding one, and
// returns it exactly with its count of decimal places.
func parseNumber(v json.RawMessage) (*big.Rat, int, error) {
	s := strings.TrimSpace(string(v))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, 0, err
		}
		s = strings.TrimSpace(s)
	}
	if s == "" || strings.ContainsAny(s, "/_") || strings.HasPrefix(s, "0x") {
		return nil, 0, fmt.Errorf("not a number")
	}
	x, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, 0, fmt.Errorf("not a number")
	}
	// Places: the denominator is 2^a·5^b for any decimal literal.
	places := 0
	d := new(big.Int).Set(x.Denom())
	for _, p := range []int64{2, 5} {
		bp, n, m := big.NewInt(p), 0, new(big.Int)
		for {
			q, rem := new(big.Int).QuoRem(d, bp, m)
			if rem.Sign() != 0 {
				break
			}
			d, n = q, n+1
		}
		places = max(places, n)
	}
	if d.Cmp(big.NewInt(1)) != 0 {
		return nil, 0, fmt.Errorf("not a decimal")
	}
	return x, places, nil
}

type countReducer struct{ n int }

// ResultOptional: count counts succeeded jobs, result line or not.
func (r *countReducer) ResultOptional() bool { return true }

// Optional wraps red so that a job without a result line succeeds and
// adds a JSON null (a list of every job's result, some with none).
func Optional(red Reducer) Reducer { return optionalReducer{red} }

type optionalReducer struct{ Reducer }

func (optionalReducer) ResultOptional() bool { return true }

func (o optionalReducer) Add(job int, v json.RawMessage) error {
	if v == nil {
		v = json.RawMessage("null")
	}
	return o.Reducer.Add(job, v)
}

// reducerName names red in messages: "sum", "list", "command".
func reducerName(red Reducer) string {
	switch r := red.(type) {
	case *numReducer:
		return r.op
	case *orderedReducer:
		return r.kind
	case *CmdReducer:
		return "command"
	}
	return fmt.Sprintf("%T", red)
}

func (r *countReducer) Add(int, json.RawMessage) error         { r.n++; return nil }
func (r *countReducer) Result(context.Context) (string, error) { return fmt.Sprint(r.n), nil }

// current is a reduce's running value, for live displays (Snapshot),
// where it is small: a number, not a keyed object or a list. Called on
// the dispatcher's goroutine, as Add is.
func (r *countReducer) current() string { return fmt.Sprint(r.n) }

func (r *numReducer) current() string {
	if r.scalar == nil {
		return ""
	}
	return r.scalar.String()
}

// orderedReducer keeps every value and emits them in job order.
type orderedReducer struct {
	kind string
	vals map[int]json.RawMessage
}

func (r *orderedReducer) Add(job int, v json.RawMessage) error { r.vals[job] = v; return nil }

func (r *orderedReducer) sorted() []int {
	jobs := make([]int, 0, len(r.vals))
	for j := range r.vals {
		jobs = append(jobs, j)
	}
	sort.Ints(jobs)
	return jobs
}

func (r *orderedReducer) Result(context.Context) (string, error) {
	var b strings.Builder
	switch r.kind {
	case "list":
		b.WriteByte('[')
		for i, j := range r.sorted() {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(r.vals[j])
		}
		b.WriteByte(']')
	case "concat":
		for _, j := range r.sorted() {
			b.WriteString(TextOf(r.vals[j]))
		}
	case "none":
		for i, j := range r.sorted() {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(TextOf(r.vals[j]))
		}
	}
	return b.String(), nil
}

// TextOf is a result as text: a JSON string unquoted, anything else as its
// JSON text.
func TextOf(v json.RawMessage) string {
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// CmdReducer runs a local command as the reducer: it receives
// {"job":N,"result":...} lines in job order on stdin, and its stdout is the
// reduced result.
type CmdReducer struct {
	Command string // run with sh -c
	Stderr  io.Writer
	ordered orderedReducer
}

// NewCmdReducer returns a reducer that runs command locally.
func NewCmdReducer(command string, stderr io.Writer) *CmdReducer {
	return &CmdReducer{Command: command, Stderr: stderr, ordered: orderedReducer{vals: map[int]json.RawMessage{}}}
}

func (r *CmdReducer) Add(job int, v json.RawMessage) error { return r.ordered.Add(job, v) }

func (r *CmdReducer) Result(ctx context.Context) (string, error) {
	var in bytes.Buffer
	for _, j := range r.ordered.sorted() {
		fmt.Fprintf(&in, `{"job":%d,"result":%s}`+"\n", j, r.ordered.vals[j])
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "sh", "-c", r.Command)
	cmd.Stdin, cmd.Stdout = &in, &out
	cmd.Stderr = r.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("reduce command %q: %w", r.Command, err)
	}
	return strings.TrimRight(out.String(), "\n"), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
