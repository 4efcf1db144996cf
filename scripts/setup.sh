#!/usr/bin/env bash
# scripts/setup.sh [demo|test]: install what dsub needs on a fresh
# Debian/Ubuntu machine. Idempotent: it installs only what is missing.
#
# demo (make demo) needs only what the demo cluster and the build use:
#   - debootstrap: builds the testenv sshd image without a registry
#   - openssh-client/server, sftp-server: ssh-keygen and the ssh CLI;
#     sshd for testenv's process backend (where Docker is missing)
#   - Go modules
# test (make test, the default) adds what the tests and the lint use:
#   - iptables: testenv's partition fault
#   - procps, util-linux: pgrep for the stray-process checks, unshare
#   - time: GNU time, to measure peak RSS in tests and benchmarks
#   - parallel: GNU parallel, the oracle the replacement-string, input
#     source and joblog tests run
#   - clustershell: nodeset, the oracle the host-range tests run
#   - chromium: the headless browser the --ui monitor and report tests drive
#   - staticcheck: `make lint`
set -euo pipefail
mode=${1:-test}
case $mode in
demo | test) ;;
*) echo "usage: scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac

pairs=(debootstrap:debootstrap ssh:openssh-client sshd:openssh-server
	/usr/lib/openssh/sftp-server:openssh-sftp-server)
if [ "$mode" = test ]; then
	pairs+=(iptables:iptables pgrep:procps /usr/bin/time:time unshare:util-linux
		parallel:parallel nodeset:clustershell chromium:chromium)
fi
need=()
for pair in "${pairs[@]}"; do
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

if [ "$mode" = test ]; then
	STATICCHECK_VERSION=v0.8.2
	gobin=$(go env GOPATH)/bin
	if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
		echo "setup: installing staticcheck $STATICCHECK_VERSION" >&2
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	fi
fi
go mod download
