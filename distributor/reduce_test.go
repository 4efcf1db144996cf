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
