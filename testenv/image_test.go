package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
}
