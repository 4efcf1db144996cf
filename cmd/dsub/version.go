package main

import "runtime/debug"

// version is stamped at build time with -ldflags "-X main.version=...".
// A `go install ...@vX` build falls back to the module version.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
