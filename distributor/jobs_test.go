package distributor

import (
	"io"
	"strings"
	"testing"
)

func TestTemplateExpand(t *testing.T) {
	tests := []struct {
		args       []string
		job, count int
		line       string
		want       string
	}{
		{[]string{"--shard", "{shard}", "--of", "{shards}"}, 3, 16, "", "--shard|2|--of|16"},
		{[]string{"n={#}", "{}"}, 7, 0, "a b  c", "n=7|a b  c"},
		{[]string{"{2}-{1}", "{3}", "{9}"}, 1, 0, "x y z", "y-x|z|"},
		{[]string{"{unknown}", "{ }", "awk '{print}'"}, 1, 0, "l", "{unknown}|{ }|awk '{print}'"},
		{[]string{"{#}{#}"}, 12, 0, "", "1212"},
	}
	for _, tt := range tests {
		got := strings.Join(NewTemplate(tt.args).Expand(tt.job, tt.count, tt.line), "|")
		if got != tt.want {
			t.Errorf("Expand(%q, %d, %d, %q) = %q, want %q", tt.args, tt.job, tt.count, tt.line, got, tt.want)
		}
	}
	if tp := NewTemplate([]string{"{1}"}); !tp.UsesInput() || tp.UsesCount() {
		t.Error("UsesInput/UsesCount wrong for {1}")
	}
	if tp := NewTemplate([]string{"{shards}"}); tp.UsesInput() || !tp.UsesCount() {
		t.Error("UsesInput/UsesCount wrong for {shards}")
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	lr := NewLineReader(strings.NewReader("a\r\n\n b \n"+long+"\nlast"), "in")
	var got []string
	var nums []int
	for {
		l, n, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
		nums = append(nums, n)
	}
	if len(got) != 4 || got[0] != "a" || got[1] != " b " || got[2] != long || got[3] != "last" {
		t.Errorf("lines = %q", got)
	}
	if nums[3] != 5 {
		t.Errorf("line numbers = %v", nums)
	}
	if n, _ := CountLines(strings.NewReader("1\n\n2\n3"), "x"); n != 3 {
		t.Errorf("CountLines = %d", n)
	}
}
