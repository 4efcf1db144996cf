// Package browser drives headless Chromium for tests of dsub's web pages
// (the --ui monitor and reports), through the DevTools protocol
// (chromedp). Chromium is Debian's package, installed by scripts/setup.sh
// and .ci/run; it runs headless, and with --no-sandbox as root.
//
// When Chromium is missing, a test that needs it fails if CI=true (in CI
// every browser test must run) and is skipped elsewhere, saying why.
package browser

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path finds Chromium: $DSUB_CHROMIUM, else Debian's chromium, else
// another name it goes by.
func Path() (string, error) {
	if p := os.Getenv("DSUB_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium in PATH (apt-get install chromium, or set DSUB_CHROMIUM)")
}

// New starts a headless Chromium for t, closed when t ends, and returns
// the context to drive its tab with.
func New(t testing.TB, width, height int) context.Context {
	t.Helper()
	path, err := Path()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: this browser test needs Chromium: %v", err)
		}
		t.Skipf("browser test: %v", err)
	}
	ctx, cancel := Start(context.Background(), path, width, height)
	t.Cleanup(cancel)
	// Start it now, so that a broken install fails here, clearly.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// Start starts a headless Chromium at path, with a window of the given
// size; cancel ends it.
func Start(ctx context.Context, path string, width, height int) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, Chromium refuses to run sandboxed
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true), // loopback and files only
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	return bctx, func() { cancelBrowser(); cancelAlloc() }
}

// WaitFor polls the page with the JavaScript expression js until it is
// true, or fails t after timeout.
func WaitFor(t testing.TB, ctx context.Context, js string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := chromedp.Run(ctx, chromedp.Evaluate(js, &ok))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("page: %s not true after %s (last error: %v)", js, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
