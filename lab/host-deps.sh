#!/bin/sh
# Host packages for the proxytier lab and tests (Debian 12, run as root). Idempotent.
# Services of these packages are NOT started on the host: a temporary policy-rc.d refuses
# service starts while apt runs (the daemons only run inside the lab's nodes).
set -eu
PKGS="nginx haproxy keepalived bird2 nftables systemd-container debootstrap iproute2 prometheus python3-venv curl jq make socat wrk shellcheck git"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "[lab] host packages present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "[lab] missing host packages:$missing -- run as root (sudo make ...)" >&2
    exit 1
fi
echo "[lab] installing host packages:$missing (about 1 min)"
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# proxytier lab: do not start services while installing\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created=1
fi
cleanup() { [ -z "$created" ] || rm -f "$policy"; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
# shellcheck disable=SC2086
apt-get -q -y install --no-install-recommends $missing
