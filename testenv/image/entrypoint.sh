#!/bin/sh
# Entrypoint of the testenv sshd image. Generates this container's own host
# keys on first start (kept across restarts), installs the cluster's client
# key for the dsub user, and runs a stock sshd in the foreground.
set -e
for t in ed25519 rsa; do
	f=/etc/ssh/ssh_host_${t}_key
	[ -s "$f" ] || ssh-keygen -q -t "$t" -N '' -f "$f"
done
mkdir -p /run/sshd /home/dsub/.ssh
if [ -n "${DSUB_AUTHORIZED_KEY:-}" ]; then
	printf '%s\n' "$DSUB_AUTHORIZED_KEY" >/home/dsub/.ssh/authorized_keys
fi
chown -R dsub:dsub /home/dsub/.ssh
chmod 700 /home/dsub/.ssh
chmod 600 /home/dsub/.ssh/authorized_keys 2>/dev/null || true
exec /usr/sbin/sshd -D -e
