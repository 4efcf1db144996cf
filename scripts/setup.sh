#!/usr/bin/env bash
# scripts/setup.sh: install what dsub's build, tests and demo need on a
# fresh Debian/Ubuntu machine. Idempotent: it installs only what is missing.
#   - debootstrap: builds the testenv sshd image without a registry
#   - openssh-client/server: the ssh CLI for tests; sshd for the process backend
#   - iptables: testenv's partition fault
#   - time: GNU time, to measure peak RSS in tests and benchmarks
#   - parallel: GNU parallel, the oracle the replacement-string and input
#     source tests run
#   - clustershell: nodeset, the oracle the host-range tests run
#   - chromium: the headless browser the --ui monitor and report tests drive
#   - staticcheck: `make lint`
set -euo pipefail

need=()
for pair in debootstrap:debootstrap ssh:openssh-client sshd:openssh-server \
	/usr/lib/openssh/sftp-server:openssh-sftp-server iptables:iptables pgrep:procps \
	/usr/bin/time:time unshare:util-linux parallel:parallel \
	nodeset:clustershell chromium:chromium; do
	bin=${pair%%:*} pkg=${pair#*:}
	if [[ $bin == /* ]]; then [ -e "$bin" ] || need+=("$pkg"); else command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "setup: installing ${need[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Peer tools for `make bench` only (not needed by the tests).
if [ "${DSUB_BENCH:-}" = 1 ]; then
	bench=()
	for pair in parallel:parallel parallel-ssh:pssh pdsh:pdsh clush:clustershell; do
		command -v "${pair%%:*}" >/dev/null || bench+=("${pair#*:}")
	done
	if [ ${#bench[@]} -gt 0 ]; then
		sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${bench[@]}" >/dev/null
	fi
fi

STATICCHECK_VERSION=v0.8.2
gobin=$(go env GOPATH)/bin
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
	echo "setup: installing staticcheck $STATICCHECK_VERSION" >&2
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
go mod download
