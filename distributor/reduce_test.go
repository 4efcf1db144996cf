package distributor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestReducers(t *testing.T) {
	tests := []struct {
		name    string
		values  []string // job i+1 gets values[i], added in reverse order
		want    string
		wantErr string
	}{
		{"sum", []string{"1", "2", "3"}, "6", ""},
		{"sum", []string{"9223372036854775807", "9223372036854775807", "2"}, "18446744073709551616", ""},
		{"sum", []string{"0.1", "0.2"}, "0.3", ""},
		{"sum", []string{"1.5", "2", `"0.25"`}, "3.75", ""},
		{"sum", []string{"1e2", "1"}, "101", ""},
		{"sum", []string{"-5", "3"}, "-2", ""},
		{"sum", nil, "0", ""},
		{"sum", []string{"1", `"abc"`}, "", `result "abc" is not a number`},
		{"sum", []string{"[1]"}, "", "not a number"},
		{"min", []string{"5", "-1.5", "3"}, "-1.5", ""},
		{"max", []string{"5", "123456789012345678901234567890", "3"}, "123456789012345678901234567890", ""},
		{"max", nil, "", "no results"},
		// Keyed: per key, recursively, exactly; one object, keys sorted.
		{"sum", []string{`{"b":1,"a":2}`, `{"a":3,"c":"0.5"}`, `{}`}, `{"a":5,"b":1,"c":0.5}`, ""},
		{"sum", []string{`{"w":{"x":1,"y":2}}`, `{"w":{"x":9223372036854775807}}`, `{"w":{"x":9223372036854775807}}`}, `{"w":{"x":18446744073709551615,"y":2}}`, ""},
		{"sum", []string{`{"p":0.1}`, `{"p":0.2}`}, `{"p":0.3}`, ""},
		{"min", []string{`{"a":5,"b":1}`, `{"a":-1.50}`}, `{"a":-1.5,"b":1}`, ""},
		{"max", []string{`{"a":5}`, `{"a":7,"<&>":1}`}, `{"<&>":1,"a":7}`, ""},
		{"sum", []string{`{}`}, `{}`, ""},
		// (Jobs are added last first: job 2's result comes before job 1's.)
		{"sum", []string{`{"a":1}`, `2`}, "", "the result is a JSON object, but job 2's was a number"},
		{"sum", []string{`1`, `{"a":2}`}, "", "the result is a number, but job 2's was a JSON object"},
		{"sum", []string{`{"a":{"b":1}}`, `{"a":2}`}, "", `result at key "a" is an object, but earlier results hold a number there`},
		{"sum", []string{`{"a":1}`, `{"a":{"b":1}}`}, "", `result at key "a" is a number, but earlier results hold an object there`},
		{"sum", []string{`{"a":{"b":"x"}}`}, "", `result at key "a.b": "x" is not a number`},
		{"sum", []string{`{"a":null}`}, "", `result at key "a": null is not a number`},
		{"sum", []string{`{"a":1`}, "", "result is not a JSON object"},
		{"count", []string{"1", `"x"`, "null"}, "3", ""},
		{"concat", []string{`"a"`, `"b"`, "3"}, "ab3", ""},
		{"list", []string{`"a"`, "{\"k\":1}", "3"}, `["a",{"k":1},3]`, ""},
		{"none", []string{`"a"`, "2"}, "a\n2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+strings.Join(tt.values, ","), func(t *testing.T) {
			r, err := NewReducer(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			var addErr error
			for i := len(tt.values) - 1; i >= 0; i-- {
				if err := r.Add(i+1, json.RawMessage(tt.values[i])); err != nil && addErr == nil {
					addErr = err
				}
			}
			got, err := r.Result(context.Background())
			if addErr != nil {
				err = addErr
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// A result the reduce refuses changes nothing: job 2's "b" is not
	// folded in before its "a" is found not to fit.
	r, _ := NewReducer("sum")
	r.Add(1, json.RawMessage(`{"a":{"x":1},"b":1}`))
	if err := r.Add(2, json.RawMessage(`{"a":2,"b":10}`)); err == nil {
		t.Error("a number where an object was: accepted")
	}
	r.Add(3, json.RawMessage(`{"b":100}`))
	if got, _ := r.Result(context.Background()); got != `{"a":{"x":1},"b":101}` {
		t.Errorf("after a refused result: %s, want {\"a\":{\"x\":1},\"b\":101}", got)
	}
	if _, err := NewReducer("avg"); err == nil {
		t.Error("unknown reducer accepted")
	}
}

func TestCmdReducer(t *testing.T) {
	r := NewCmdReducer(`cat`, nil)
	r.Add(2, json.RawMessage(`"b"`))
	r.Add(1, json.RawMessage(`1`))
	got, err := r.Result(context.Background())
	if err != nil || got != "{\"job\":1,\"result\":1}\n{\"job\":2,\"result\":\"b\"}" {
		t.Errorf("= %q, %v", got, err)
	}
	bad := NewCmdReducer(`exit 3`, nil)
	if _, err := bad.Result(context.Background()); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing reducer: %v", err)
	}
}
