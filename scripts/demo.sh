#!/usr/bin/env bash
# The README's first command (`make demo`): bring up a local 4-host
# dockerized sshd cluster (no hand-written config) and run dsub across it.
# The cluster stays up so you can keep trying commands; `make demo-down`
# removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.dsub-testenv/demo
dsub=./bin/dsub

if [ ! -f "$state/cluster.json" ]; then
	go run ./testenv/cmd/testenv up -n 4 --name demo --state "$state" >/dev/null
fi
hosts="$state/hosts.toml"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say dsub ping --hosts "$hosts"
$dsub ping --hosts "$hosts"

say dsub exec --hosts "$hosts" --group -- 'uname -sr; nproc'
$dsub exec --hosts "$hosts" --group -- 'uname -sr; nproc'

say dsub exec --hosts "$hosts" -- printf '[%s]\\n' 'a b' '$(x)'
$dsub exec --hosts "$hosts" -- printf '[%s]\n' 'a b' '$(x)'

if $dsub run --help >/dev/null 2>&1; then
	say dsub run --hosts "$hosts" --build ./examples/primes --shards 16 --reduce sum -- count --shard '{shard}' --of '{shards}' --upto 1000000000
	$dsub run --hosts "$hosts" --build ./examples/primes --shards 16 --reduce sum -- count --shard '{shard}' --of '{shards}' --upto 1000000000
fi

printf '\nThe cluster is still up: try  %s exec -- uptime   (./hosts.toml describes it)\nRemove it with: make demo-down\n' "$dsub"
