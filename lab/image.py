"""The node image: Debian bookworm or trixie (debootstrap; config.RELEASE), a salt-minion venv
(config.SALT_VERSION), and an offline apt repository.

nginx, haproxy, keepalived and bird2 are NOT installed in the image; their .debs (and dependencies) are
downloaded at build time into a local apt repository inside the image so that the formula's
`pkg.installed` installs them for real, offline, on every node.

The image is cached in CACHE/image-<release>-salt<version> and rebuilt when missing or when its
recipe (package lists, scripts, units, configure()) changes.

The mirror is the host's own: the URIs of its bookworm apt sources, read at run time; a trixie image
uses the same URIs with the suite renamed (bookworm-security -> trixie-security, ...). Salt: on
bookworm (Python 3.11, the host's) from wheels the host's pip builds; on trixie (Python 3.13) pip
inside the image builds it, with gcc and python3-dev (timelib has no cp313 wheel) and the host's CA
bundle bound in for the package index (FIELD-NOTES).
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

HOST_SUITE = "bookworm"  # the host's release: its apt sources name the mirror
SUITE = config.RELEASE
#: pip inside the image reaches the index through the host's CA bundle (bound read-only at build time)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_IMAGE = "/var/tmp/proxytier-host-ca.crt"
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
    "logrotate",  # the formula installs it with the exporter (it rotates the access log nginx writes for it)
    "bird2",  # vip_mode bgp: the formula's proxytier.packages installs BIRD 2 (lab.bgp)
]

STAMP = config.CACHE / f"{config.IMAGE.name}.recipe"
WHEELS = config.CACHE / f"wheels-salt-{config.SALT_VERSION}"
WHEELS_FROM_HOST = SUITE == HOST_SUITE  # same Python (3.11) as the host: the host's pip builds them
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
Description=proxytier lab: static addresses on host0 (from /etc/proxytier-lab/node.env)
After=systemd-journald.service
Before=network.target
Wants=network.target
ConditionPathExists=/etc/proxytier-lab/node.env

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/proxytier-lab/node.env
# An address of each family (ADDRESS6 may be empty) and no IPv6 link-local address: the lab uses nothing
# but 198.18.0.0/15 and 2001:2::/48; no duplicate address detection (the lab assigns every address)
ExecStart=/bin/sh -c 'ip link set host0 addrgenmode none && ip link set host0 up && \\
    ip -6 address flush dev host0 scope link && ip address replace "$ADDRESS" dev host0 && \\
    if [ -n "$ADDRESS6" ]; then ip address replace "$ADDRESS6" dev host0 nodad; fi'

[Install]
WantedBy=multi-user.target
"""

SALT_FROM_WHEELS = f"""\
{SALT_VENV}/bin/pip install --no-cache-dir --disable-pip-version-check -q --no-index \\
    --find-links {WHEELS_IN_IMAGE} salt=={config.SALT_VERSION}
rm -rf {WHEELS_IN_IMAGE}
"""
SALT_FROM_INDEX = f"""\
apt-get -q -y install --no-install-recommends gcc python3-dev
PIP_CERT={CA_IN_IMAGE} {SALT_VENV}/bin/pip install --no-cache-dir --disable-pip-version-check -q \\
    salt=={config.SALT_VERSION}
apt-get -q -y purge gcc python3-dev && apt-get -q -y autoremove --purge
"""

#: the base of every image of a release (any Salt): the .debs of the offline repository
PACKAGES_SCRIPT = f"""\
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
rm -f /var/cache/apt/archives/*.deb
for group in {" ".join(repr(g) for g in OFFLINE_PACKAGES)}; do
    apt-get -q -y install --download-only $group
done
mkdir -p {LOCAL_REPO}
mv /var/cache/apt/archives/*.deb {LOCAL_REPO}/
"""
SALT_SCRIPT = f"""\
set -eu
export DEBIAN_FRONTEND=noninteractive
python3 -m venv {SALT_VENV}
{SALT_FROM_WHEELS if WHEELS_FROM_HOST else SALT_FROM_INDEX}\
{SALT_VENV}/bin/salt-minion --version
"""
BASE = config.CACHE / f"base-{SUITE}"  # debootstrap + PACKAGES_SCRIPT, shared by the Salt versions
BASE_STAMP = config.CACHE / f"base-{SUITE}.recipe"

FINISH_SCRIPT = """\
set -eu
apt-get -q update
apt-get clean
rm -rf /var/lib/apt/lists/partial/* /root/.cache
"""


def recipe_hash() -> str:
    """Hash of what goes into the image (not of this module's other code): a change rebuilds it."""
    parts = [base_recipe_hash(), MINION_CONF, MINION_UNIT, NET_UNIT, SALT_SCRIPT, FINISH_SCRIPT]
    parts.append(inspect.getsource(configure))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_recipe_hash() -> str:
    """Hash of the release's base (debootstrap and the offline .debs)."""
    return hashlib.sha256("\0".join([SUITE, INCLUDE, *OFFLINE_PACKAGES, PACKAGES_SCRIPT]).encode()).hexdigest()[:16]


def is_current() -> bool:
    try:
        return config.IMAGE.is_dir() and STAMP.read_text().strip() == recipe_hash()
    except OSError:
        return False


def host_debian_sources(apt: Path = Path("/etc/apt")) -> list[tuple[str, str, str]]:
    """(uri, suite, components) of the image's Debian apt sources: the host's bookworm sources, read at
    run time, with the suite renamed to the image's release (the same mirror serves both)."""
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
        (u.rstrip("/"), SUITE + s[len(HOST_SUITE):], c)
        for u, s, c in entries
        if u.startswith(("http://", "https://")) and (s == HOST_SUITE or s.startswith(HOST_SUITE + "-"))
    ]


def salt_wheels() -> Path:
    """Wheels for salt and its dependencies, fetched by the host's own pip (its index and CA settings)
    and built for CPython 3.11 = the image's python3; the image installs them offline."""
    if sys.version_info[:2] != (3, 11):  # bookworm's python3
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
    raise LabError(f"no Debian '{HOST_SUITE}' source in the host's /etc/apt sources; the lab reads its mirror "
                   "from there")


def nspawn_run(root: Path, script: str, timeout: float, binds: tuple[str, ...] = ()) -> None:
    """Run a shell script inside the image tree (host network: it may reach the package registries);
    `binds`: extra ``--bind-ro=`` arguments (host path[:image path])."""
    run(
        [
            "systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit", "--pipe",
            "--resolv-conf=copy-host", "--timezone=off", "--link-journal=no", "-E", "LC_ALL=C",
            *(f"--bind-ro={b}" for b in binds), "/bin/sh", "-c", script,
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


def build_base() -> dict[str, float]:
    """The release's base tree (debootstrap, the host's mirror, the offline .debs), built when missing
    or stale; returns timings (empty when the cached one is used)."""
    try:
        if BASE.is_dir() and BASE_STAMP.read_text().strip() == base_recipe_hash():
            return {}
    except OSError:
        pass
    timings: dict[str, float] = {}
    tmp = config.CACHE / f"{BASE.name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    BASE_STAMP.unlink(missing_ok=True)
    url = mirror()
    with step(f"building node image: debootstrap {SUITE} ({config.RELEASES[SUITE]}, minbase)", "1-2 min") as t:
        run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, tmp, url], timeout=1200)
    timings["debootstrap"] = t["seconds"]
    lines = [f"deb {u} {s} {c}" for u, s, c in host_debian_sources()]
    (tmp / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    for f in (tmp / "etc/apt/sources.list.d").glob("*"):  # debootstrap's own (trixie writes debian.sources)
        f.unlink()
    with step("node image: downloading nginx/haproxy/keepalived/bird2 .debs", "1 min") as t:
        nspawn_run(tmp, PACKAGES_SCRIPT, timeout=1500)
    timings["packages"] = t["seconds"]
    shutil.rmtree(BASE, ignore_errors=True)
    tmp.rename(BASE)
    BASE_STAMP.write_text(base_recipe_hash() + "\n")
    return timings


def build(force: bool = False) -> dict[str, float]:
    """Build the image if missing or stale; return timings (empty when the cached image is used): a copy
    of the release's base (build_base) with Salt, the lab's units and the offline repository's index."""
    if not force and is_current():
        log(f"node image is current ({config.IMAGE}, recipe {recipe_hash()})")
        return {}
    t_start = time.monotonic()
    config.CACHE.mkdir(parents=True, exist_ok=True)
    config.check_platform()
    if force:
        BASE_STAMP.unlink(missing_ok=True)
    timings = build_base()
    tmp = config.CACHE / f"{config.IMAGE.name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    run(["cp", "-a", "--reflink=auto", BASE, tmp], timeout=600)
    binds: tuple[str, ...] = ()
    if WHEELS_FROM_HOST:
        shutil.copytree(salt_wheels(), tmp / WHEELS_IN_IMAGE.lstrip("/"))
    else:
        binds = (f"{HOST_CA_BUNDLE}:{CA_IN_IMAGE}",)
    what = "installing salt" if WHEELS_FROM_HOST else "pip builds salt (gcc)"
    with step(f"node image: {what} {config.SALT_VERSION}", "1-3 min") as t:
        nspawn_run(tmp, SALT_SCRIPT, timeout=1500, binds=binds)
    timings["salt"] = t["seconds"]
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
