package errs

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestErrorText(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		err  error
		want string
	}{
		{E(OpConnect, "h01", KindTransport, cause), "connect on h01: boom"},
		{E(OpShip, "h01", KindConfig, cause).WithPath("/bin/x"), "ship /bin/x on h01: boom"},
		{E(OpReturn, "h01", KindLocal, cause).WithPath("out.txt").WithJob(7), "return out.txt on h01, job 7: boom"},
		{E(OpResume, "", KindConfig, cause).WithPath("runs/r1"), "resume runs/r1: boom"},
		{E(OpConnect, "h01", KindHostKey, cause).WithHint("add it"), "connect on h01: boom\n  hint: add it"},
		{Config("hosts.toml:3", "port 0"), "hosts.toml:3: port 0"},
		{List{Config("a:1", "x"), Config("a:2", "y")}, "a:1: x\na:2: y"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		err  error
		want Kind
	}{
		{nil, KindOther},
		{errors.New("x"), KindOther},
		{context.Canceled, KindCanceled},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), KindTimeout},
		{fmt.Errorf("wrapped: %w", E(OpExec, "h", KindRemoteExit, nil)), KindRemoteExit},
		{List{Config("f:1", "bad")}, KindConfig},
		{fmt.Errorf("load: %w", List{Config("f:1", "bad"), Config("f:2", "bad")}), KindConfig},
		{E(OpExec, "h", KindTransport, nil).WithPGID(42), KindTransport},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
