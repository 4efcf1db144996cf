package distributor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestFunctionSize: no function in the package is longer than a screen
// (100 lines). One that grows past it is a type waiting to be born, as the
// dispatcher was.
func TestFunctionSize(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > 100 {
					t.Errorf("%s: %s is %d lines long", fset.Position(fd.Pos()), fd.Name.Name, n)
				}
			}
		}
	}
}
