"""The node image: Debian bookworm (debootstrap), a salt-minion venv, and an offline apt repository.

nginx, haproxy and keepalived are NOT installed in the image; their .debs (and dependencies) are
downloaded at build time into a local apt repository inside the image so that the formula's
`pkg.installed` installs them for real, offline, on every node.

The image is cached in CACHE/image and rebuilt when missing or when its recipe (package lists,
scripts, units, configure()) changes.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import sys
import time
from pathlib import Path

from lab import config
from lab.sh import LabError, log, run, step

SUITE = "bookworm"
# procps: sysctl, as on any Debian server (the formula sets net.ipv4.ip_nonlocal_bind)
INCLUDE = "systemd,systemd-sysv,dbus,iproute2,procps,python3,python3-venv,ca-certificates"
LOCAL_REPO = "/var/local/proxytier-debs"
SALT_VENV = "/opt/salt"
# Each group is resolved on its own against the bare image, so alternatives (nginx vs nginx-light)
# are all available offline; the formula installs whichever it names.
OFFLINE_PACKAGES = [
    "nginx",
    "nginx-light",
    "haproxy",
    "keepalived",
    "python3-prometheus-client python3-requests",
    "curl",
    "nftables",
]

STAMP = config.CACHE / "image.recipe"
WHEELS = config.CACHE / f"wheels-salt-{config.SALT_VERSION}"
WHEELS_IN_IMAGE = "/var/tmp/salt-wheels"

MINION_CONF = f"""\
# proxytier lab: every node's minion talks to the lab salt-master on the bridge.
master: {config.HOST_ADDR}
acceptance_wait_time: 1
acceptance_wait_time_max: 2
random_reauth_delay: 0
auth_timeout: 10
recon_default: 500
recon_max: 3000
recon_randomize: False
master_tries: -1
log_level_logfile: info
"""

MINION_UNIT = f"""\
[Unit]
Description=Salt minion (proxytier lab)
After=network.target proxytier-lab-net.service
Wants=proxytier-lab-net.service

[Service]
ExecStart={SALT_VENV}/bin/salt-minion
KillMode=process
TimeoutStopSec=5
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""

NET_UNIT = """\
[Unit]
Description=proxytier lab: static address on host0 (from /etc/proxytier-lab/node.env)
After=systemd-journald.service
Before=network.target
Wants=network.target
ConditionPathExists=/etc/proxytier-lab/node.env

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/proxytier-lab/node.env
# IPv4 only: the lab uses nothing but 198.18.0.0/15 (no IPv6 link-local chatter on the bridge)
ExecStart=/bin/sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \\
    ip link set host0 up && ip address replace "$ADDRESS" dev host0'

[Install]
WantedBy=multi-user.target
"""

BUILD_SCRIPT = f"""\
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
rm -f /var/cache/apt/archives/*.deb
for group in {" ".join(repr(g) for g in OFFLINE_PACKAGES)}; do
    apt-get -q -y install --download-only $group
done
mkdir -p {LOCAL_REPO}
mv /var/cache/apt/archives/*.deb {LOCAL_REPO}/
python3 -m venv {SALT_VENV}
{SALT_VENV}/bin/pip install --no-cache-dir --disable-pip-version-check -q --no-index \\
    --find-links {WHEELS_IN_IMAGE} salt=={config.SALT_VERSION}
rm -rf {WHEELS_IN_IMAGE}
{SALT_VENV}/bin/salt-minion --version
"""

FINISH_SCRIPT = """\
set -eu
apt-get -q update
apt-get clean
rm -rf /var/lib/apt/lists/partial/* /root/.cache
"""


def recipe_hash() -> str:
    """Hash of what goes into the image (not of this module's other code): a change rebuilds it."""
    parts = [SUITE, INCLUDE, *OFFLINE_PACKAGES, MINION_CONF, MINION_UNIT, NET_UNIT, BUILD_SCRIPT, FINISH_SCRIPT]
    parts.append(inspect.getsource(configure))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def is_current() -> bool:
    try:
        return config.IMAGE.is_dir() and STAMP.read_text().strip() == recipe_hash()
    except OSError:
        return False


def host_debian_sources(apt: Path = Path("/etc/apt")) -> list[tuple[str, str, str]]:
    """(uri, suite, components) of the host's Debian bookworm apt sources, read at run time."""
    entries: list[tuple[str, str, str]] = []
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
            if m:
                entries.append((m.group(1), m.group(2), m.group(3).split("#")[0].strip()))
    for f in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    entries.append((uri, suite, fields.get("components", "main")))
    return [
        (u.rstrip("/"), s, c)
        for u, s, c in entries
        if u.startswith(("http://", "https://")) and (s == SUITE or s.startswith(SUITE + "-"))
    ]


def salt_wheels() -> Path:
    """Wheels for salt and its dependencies, fetched by the host's own pip (its index and CA settings)
    and built for CPython 3.11 = the image's python3; the image installs them offline."""
    if sys.version_info[:2] != (3, 11):
        raise LabError("run the lab with a Python 3.11 venv (Debian 12's python3): the node image's Python is 3.11")
    done = WHEELS / ".complete"
    if not done.exists():
        shutil.rmtree(WHEELS, ignore_errors=True)
        with step(f"salt {config.SALT_VERSION} wheels for the node image (host pip)", "30 s"):
            run([sys.executable, "-m", "pip", "wheel", "-q", f"salt=={config.SALT_VERSION}", "-w", WHEELS], timeout=900)
        done.touch()
    return WHEELS


def mirror(apt: Path = Path("/etc/apt")) -> str:
    for uri, suite, _ in host_debian_sources(apt):
        if suite == SUITE:
            return uri
    raise LabError(f"no Debian '{SUITE}' source in the host's /etc/apt sources; the lab reads its mirror from there")


def nspawn_run(root: Path, script: str, timeout: float) -> None:
    """Run a shell script inside the image tree (host network: it may reach the package registries)."""
    run(
        [
            "systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit", "--pipe",
            "--resolv-conf=copy-host", "--timezone=off", "--link-journal=no", "-E", "LC_ALL=C",
            "/bin/sh", "-c", script,
        ],
        timeout=timeout,
    )  # fmt: skip


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def enable(root: Path, unit: str, target: str = "multi-user.target") -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{unit}")


def mask(root: Path, unit: str) -> None:
    link = root / "etc/systemd/system" / unit
    link.unlink(missing_ok=True)
    link.symlink_to("/dev/null")


def write_packages_index(repo: Path) -> int:
    """A flat apt repository index (Packages) for the .debs in repo; no extra host tools needed."""
    stanzas = []
    debs = sorted(repo.glob("*.deb"))
    for deb in debs:
        control = run(["dpkg-deb", "-f", deb]).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    (repo / "Packages").write_text("\n".join(stanzas))
    return len(debs)


def configure(root: Path) -> None:
    """Files common to every node; per-node files go into each node's overlay."""
    write(root, "/etc/resolv.conf", "# proxytier lab: no DNS; names are in /etc/hosts\n")
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", f"{config.HOST_ADDR} salt labhost"]
    hosts += [f"{n.address} {n.name}" for n in config.ALL_NODES]
    hosts += [f"{b.address} {b.name}" for b in config.BACKENDS]
    write(root, "/etc/hosts", "\n".join(hosts) + "\n")
    write(root, "/etc/hostname", "proxy\n")
    write(root, "/etc/machine-id", "")
    write(root, "/etc/salt/minion.d/proxytier-lab.conf", MINION_CONF)
    write(root, "/etc/systemd/system/salt-minion.service", MINION_UNIT)
    write(root, "/etc/systemd/system/proxytier-lab-net.service", NET_UNIT)
    enable(root, "salt-minion.service")
    enable(root, "proxytier-lab-net.service")
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "console-getty.service", "systemd-networkd.service"):
        mask(root, unit)
    sources = root / "etc/apt/sources.list.d"
    for f in sources.glob("*"):
        f.unlink()
    (root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{LOCAL_REPO} ./\n")


def build(force: bool = False) -> dict[str, float]:
    """Build the image if missing or stale; return timings (empty when the cached image is used)."""
    if not force and is_current():
        log(f"node image is current ({config.IMAGE}, recipe {recipe_hash()})")
        return {}
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    config.CACHE.mkdir(parents=True, exist_ok=True)
    tmp = config.CACHE / "image.new"
    shutil.rmtree(tmp, ignore_errors=True)
    url = mirror()
    with step(f"building node image: debootstrap {SUITE} (minbase)", "1-2 min") as t:
        run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, tmp, url], timeout=1200)
    timings["debootstrap"] = t["seconds"]
    shutil.copytree(salt_wheels(), tmp / WHEELS_IN_IMAGE.lstrip("/"))
    lines = [f"deb {u} {s} {c}" for u, s, c in host_debian_sources()]
    (tmp / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    with step("node image: downloading nginx/haproxy/keepalived .debs + pip install salt", "1-2 min") as t:
        nspawn_run(tmp, BUILD_SCRIPT, timeout=1500)
    timings["packages_and_salt"] = t["seconds"]
    configure(tmp)
    count = write_packages_index(tmp / LOCAL_REPO.lstrip("/"))
    with step(f"node image: offline apt repository ({count} .debs)", "10 s") as t:
        nspawn_run(tmp, FINISH_SCRIPT, timeout=300)
    if config.IMAGE.exists():
        shutil.rmtree(config.IMAGE)
    tmp.rename(config.IMAGE)
    STAMP.write_text(recipe_hash() + "\n")
    timings["image_build"] = round(time.monotonic() - t_start, 1)
    log(f"node image ready in {timings['image_build']:.0f} s: {config.IMAGE}")
    return timings
