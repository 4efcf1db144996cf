package monitor

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// fullState has every field of State and of the types it holds set to
// something other than its zero value, so that a field the hand encoder
// misses shows in the comparison with encoding/json.
func fullState(s string, f float64, n int) State {
	seg := Segment{ID: n, Lane: n + 1, Start: int64(n) * 3, End: int64(n) * 5, Job: n + 2, N: n + 3, F: n + 4,
		Kind: "fail" + s, Exit: n + 5, Cmd: "cmd " + s, Tail: "tail " + s, Log: "log " + s, Host: "not encoded"}
	return State{Live: true, Done: true, ID: s, Dir: "dir" + s, Started: "2026" + s, Command: "dsub run " + s,
		Jobs: n, AllKnown: true, Succeeded: n + 1, Failed: n + 2, Running: n + 3, Queued: n + 4,
		ElapsedS: f, Rate: f * 2, EtaS: -f, Reduced: "r" + s, Result: "res" + s, Error: "err" + s, Speedup: f + 1, Control: true,
		Hosts: []HostRow{{Name: s, State: "up", Launcher: "agent", Slots: n, Running: n, Queued: n, Done: n, Failed: n, Lost: n,
			SecPerJob: f, CPUEff: f / 3, Load: f * 7, MemFree: int64(n) << 30, MemTotal: int64(n) << 31, Error: s}},
		Timeline: Timeline{Epoch: n, ResMS: int64(n) * 9, LanesFrom: n + 1, Lanes: []Lane{{Host: s, Slot: n}},
			Ended: []Segment{seg, {}}, Running: []Segment{seg}, Prep: []Segment{seg}, Full: true, Merged: n},
		Failures: []Segment{seg}, Stragglers: []Segment{seg}, Histogram: []Bin{{Lo: f, Hi: f * 2, N: n}},
		Warnings: []string{s, "w"}, Notes: []string{"n" + s}, Summary: &HostTotals{Done: n, JobTime: f, Slots: n}}
}

// allSet reports the first zero-valued field of v's structs, so that
// fullState cannot fall behind the types.
func allSet(t *testing.T, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if f.IsZero() {
				t.Errorf("fullState leaves %s.%s unset: give it a value, and encode it in appendState", path, v.Type().Field(i).Name)
			}
			allSet(t, f, path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() > 0 {
			allSet(t, v.Index(0), path+"[0]")
		}
	case reflect.Pointer:
		if !v.IsNil() {
			allSet(t, v.Elem(), path)
		}
	}
}

func TestAppendState(t *testing.T) {
	full := fullState("x <b>&</b> \"q\" \\ \n\t\x01 é \u2028 \xff end", 1.5, 7)
	allSet(t, reflect.ValueOf(full), "State")
	cases := map[string]State{
		"zero":   {},
		"full":   full,
		"tiny":   fullState("", 1e-7, -1),
		"huge":   fullState("", 1e21, math.MaxInt32),
		"exp":    fullState("", 1.25e-9, 1),
		"empty":  {Hosts: []HostRow{}, Timeline: Timeline{Lanes: []Lane{}, Ended: []Segment{}, Running: []Segment{}}},
		"nowarn": {Warnings: []string{}, Failures: []Segment{}, Notes: []string{}, Histogram: []Bin{}},
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) { sameAsJSON(t, &st) })
	}
}

// FuzzAppendState compares the hand encoder with encoding/json on any
// string and number.
func FuzzAppendState(f *testing.F) {
	f.Add("plain", 0.25, 3)
	f.Add("</script><script>alert(1)</script>", 123456789.125, -4)
	f.Add("\x00\x1f\x7f\u2029\U0001F600\xc3", 1e-300, 1<<30)
	f.Fuzz(func(t *testing.T, s string, x float64, n int) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0 // encoding/json refuses them
		}
		st := fullState(s, x, n)
		sameAsJSON(t, &st)
	})
}

func sameAsJSON(t *testing.T, st *State) {
	t.Helper()
	want, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendState(nil, st); !bytes.Equal(got, want) {
		t.Errorf("appendState differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestAppendFloatNotANumber(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := string(appendFloat(nil, f)); got != "0" {
			t.Errorf("appendFloat(%v) = %s, want 0", f, got)
		}
	}
}
