package monitor

import (
	_ "embed"
	"io"
	"strings"
)

// The page: one HTML file with its style and script inlined, so that it
// needs nothing from the network, and a report is one file.
var (
	//go:embed page/page.html
	pageHTML string
	//go:embed page/style.css
	pageCSS string
	//go:embed page/app.js
	pageJS string
)

// csp lets the page run its own inline script and style and talk to
// where it came from, and nothing else.
const csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"

// WritePage writes the page; with st, the state is embedded (a report),
// without, the page follows the stream of the server that sent it.
func WritePage(w io.Writer, st *State) error {
	data := []byte("null")
	if st != nil {
		data = appendState(nil, st) // escapes <, > and &: nothing closes the script
	}
	page := strings.NewReplacer("/*CSS*/", pageCSS, "/*JS*/", pageJS).Replace(pageHTML)
	before, after, _ := strings.Cut(page, "/*DATA*/")
	if _, err := io.WriteString(w, before); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := io.WriteString(w, after)
	return err
}

// WriteReport writes the self-contained HTML report of the run recorded
// in dir.
func WriteReport(w io.Writer, dir string) error {
	st, err := FromRecords(dir)
	if err != nil {
		return err
	}
	return WritePage(w, &st)
}
