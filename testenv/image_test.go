package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMirrorFromSources(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"deb822", "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", "http://mirror.example/debian"},
		{"deb822 security first", "URIs: http://mirror.example/debian-security\n\nURIs: http://mirror.example/debian/\n", "http://mirror.example/debian"},
		{"one-line", "# c\ndeb [arch=amd64] http://m.example/debian bookworm main\n", "http://m.example/debian"},
		{"none", "deb https://other.example/apt stable main\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s")
			if err := os.WriteFile(p, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := mirrorFromSources(p); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImageTagTracksRecipe(t *testing.T) {
	tag := ImageTag()
	if !strings.HasPrefix(tag, ImageRepo+":") || len(tag) != len(ImageRepo)+1+12 {
		t.Fatalf("ImageTag() = %q", tag)
	}
	if ImageTag() != tag {
		t.Fatal("ImageTag is not deterministic")
	}
	// A copy of the recipe hashes the same; any change to a file's
	// content or name gives another tag.
	copyFS := fstest.MapFS{}
	fs.WalkDir(imageFS, "image", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := imageFS.ReadFile(p)
			copyFS[p] = &fstest.MapFile{Data: b}
		}
		return nil
	})
	if len(copyFS) == 0 || recipeTag(copyFS) != tag {
		t.Fatalf("the recipe's copy (%d files) hashes to %s, want %s", len(copyFS), recipeTag(copyFS), tag)
	}
	for name, f := range copyFS {
		changed := fstest.MapFS{}
		renamed := fstest.MapFS{}
		for n, g := range copyFS {
			changed[n], renamed[n] = g, g
		}
		changed[name] = &fstest.MapFile{Data: append(append([]byte(nil), f.Data...), '\n')}
		delete(renamed, name)
		renamed[name+".renamed"] = f
		if recipeTag(changed) == tag || recipeTag(renamed) == tag {
			t.Errorf("changing or renaming %s leaves the tag %s", name, tag)
		}
	}
}
