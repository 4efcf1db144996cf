package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// flagInProse is a CLI flag named inside a message ("pass --accept-new"),
// not an argument on its own ("--slots").
var flagInProse = regexp.MustCompile(`(^|[\s(])--[a-z][a-z-]+|\b(use|pass|with|add|try|set) -[a-zA-Z]\b`)

// TestLibraryMessagesNameNoFlag: errs promises that messages below the
// CLI name no flag, since the library does not know them. A string
// literal in a library package that names one in prose fails; an
// argument vector's element ("--slots") is not prose.
func TestLibraryMessagesNameNoFlag(t *testing.T) {
	libs := []string{"errs", "queue", "remote", "remote/fakehost", "agent", "inventory", "distributor", "monitor", "internal/hostrange"}
	allowed := map[string]bool{
		// the command line of a made-up job in made-up records
		`./work --shard %d`: true,
	}
	fset := token.NewFileSet()
	for _, pkg := range libs {
		dir := filepath.Join("..", "..", pkg)
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(fset, f, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil || allowed[s] || !strings.ContainsAny(s, " \t") {
					return true
				}
				if flagInProse.MatchString(s) {
					t.Errorf("%s: a library message names a CLI flag: %q", fset.Position(lit.Pos()), s)
				}
				return true
			})
		}
	}
}
