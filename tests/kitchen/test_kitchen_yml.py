"""kitchen.yml is consistent with the repository without Docker: the driver boots systemd, kitchen-salt
copies the formula, its model and the top file, every suite's pillar is one the formula accepts for the
suite's minion (and its rendered configs pass the daemons' own checks on such a node), Salt 3007 and 3008
are both tested, and the verifier runs the node checks (tests/node) that the lab runs too."""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import FORMULA, HOST_CHECK_USER, ROOT, build_model, os_params, render

from lab import config as lab_config

KITCHEN_YML = ROOT / "kitchen.yml"
SUITES = {"seed": 1, "active-active": 3, "multi-node": None}  # suite -> VIPs it must have (None: any)
ALLOWED = ipaddress.ip_network("198.18.0.0/15")  # the only addresses the project uses


@pytest.fixture(scope="module")
def kitchen() -> dict[str, Any]:
    doc = yaml.safe_load(KITCHEN_YML.read_text())
    assert isinstance(doc, dict)
    return doc


def suite(kitchen: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in kitchen["suites"] if s["name"] == name]
    assert len(found) == 1, f"kitchen.yml has {len(found)} suites named {name}"
    return found[0]


def suite_pillar(kitchen: dict[str, Any], name: str) -> tuple[Path, dict[str, Any]]:
    prov = suite(kitchen, name)["provisioner"]
    # kitchen-salt documents pillars_from_files; its code reads pillars-from-files: both are given
    assert prov["pillars_from_files"] == prov["pillars-from-files"]
    assert set(prov["pillars_from_files"]) == {"proxytier.sls"}
    path = ROOT / prov["pillars_from_files"]["proxytier.sls"]
    assert path.is_file(), f"{name}: {path} is missing"
    assert path.parent == ROOT / "tests" / "kitchen" / "pillar"
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"proxytier"}, f"{path}: top-level keys {sorted(doc)}"
    return path, doc["proxytier"]


def minion_id(kitchen: dict[str, Any], name: str) -> str:
    prov = suite(kitchen, name)["provisioner"]
    # the highstate runs with --id=salt_minion_id; the verifier's salt-call reads the id from the config
    assert prov["salt_minion_id"] == prov["salt_minion_extra_config"]["id"]
    return prov["salt_minion_id"]


def test_driver_boots_systemd_in_docker(kitchen: dict[str, Any]) -> None:
    driver = kitchen["driver"]
    assert driver["name"] == "docker"
    assert driver["privileged"] is True
    assert driver["run_command"] in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in driver["volume"]
    assert driver["run_options"]["cgroupns"] == "host"
    installs = " ".join(driver["provision_command"])
    # systemd to boot; iproute2 for the suites' init_environment; python3 for the node checks
    for pkg in ("systemd", "iproute2", "python3"):
        assert re.search(rf"\b{pkg}\b", installs), f"provision_command does not install {pkg}"
    assert kitchen["transport"]["name"] == "docker"


def test_provisioner_copies_formula_model_and_top(kitchen: dict[str, Any]) -> None:
    prov = kitchen["provisioner"]
    assert prov["name"] == "salt_solo"
    assert prov["salt_install"] == "bootstrap"
    assert prov["is_file_root"] is True
    # kitchen-salt copies <local_salt_root>/salt to the file root; with `formula` set it would nest it
    assert "formula" not in prov
    tree = ROOT / prov["local_salt_root"] / "salt"
    assert (tree / "proxytier" / "init.sls").is_file()
    assert (tree / "proxytier" / "map.jinja").is_file()
    assert (tree / "_modules" / "proxytier.py").is_file()
    assert (tree / "_states" / "proxytier.py").is_file()
    assert (tree / "_utils" / "proxytier_model.py").is_file()
    assert prov["state_top_from_file"] is True
    assert (tree / "top.sls").is_file()
    assert prov["pillars"]["top.sls"] == {"base": {"*": ["proxytier"]}}
    assert "__pycache__" in prov["salt_copy_filter"]


def test_platforms_are_the_support_matrix_with_pinned_salt(kitchen: dict[str, Any]) -> None:
    """Debian 12 and 13 x Salt 3006, 3007, 3008, each Salt pinned to the lab's version of that line."""
    cells = []
    for platform in kitchen["platforms"]:
        assert platform["driver"]["platform"] == "debian"
        version = str(platform["provisioner"]["salt_version"])
        assert re.fullmatch(r"\d{4}\.\d+", version), f"{platform['name']}: unpinned Salt {version}"
        options = platform["provisioner"]["salt_bootstrap_options"].split()
        assert options[-1] == version, f"{platform['name']}: bootstrap installs {options[-1]}, not {version}"
        assert version in lab_config.SALT_VERSIONS, f"{platform['name']}: Salt {version} is not the lab's"
        image = platform["driver"]["image"]
        assert platform["name"] == f"{image.replace(':', '-')}-salt-{version.split('.')[0]}", platform["name"]
        cells.append((image, version.split(".")[0]))
    assert sorted(cells) == [(f"debian:{d}", m) for d in ("12", "13") for m in ("3006", "3007", "3008")]


def test_suites_are_the_three_layouts(kitchen: dict[str, Any]) -> None:
    assert sorted(s["name"] for s in kitchen["suites"]) == sorted(SUITES)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_pillar_is_valid_for_its_minion(kitchen: dict[str, Any], name: str) -> None:
    path, pillar = suite_pillar(kitchen, name)
    mid = minion_id(kitchen, name)
    model = build_model(pillar, mid, params=os_params())  # raises with the key and the fix if invalid
    ids = [m["id"] for m in model["members"]]
    assert mid in ids
    if SUITES[name] is not None:
        assert len(model["vips"]) == SUITES[name], f"{path.name}: {len(model['vips'])} VIPs"
        assert model["mode"] == name
    else:  # multi-node: a listed set, the container one member of it (not the first one)
        assert model["members_source"] == "pillar"
        assert len(ids) >= 3 and ids.index(mid) > 0
    # the container carries the addresses; every one is from the benchmarking range
    assert model["interface"] == "eth0"
    hosts = [m["address"] for m in model["members"]] + model["vips"]
    hosts += [sv["address"].rsplit(":", 1)[0] for site in model["nginx"]["sites"] for sv in site["servers"]]
    assert [h for h in hosts if ipaddress.ip_address(h) not in ALLOWED] == []


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_puts_its_member_address_on_eth0(kitchen: dict[str, Any], name: str) -> None:
    """nginx -t binds the member address: init_environment must put exactly that address on the interface."""
    _path, pillar = suite_pillar(kitchen, name)
    model = build_model(pillar, minion_id(kitchen, name), params=os_params())
    init = suite(kitchen, name)["provisioner"]["init_environment"]
    m = re.search(r"\bip addr(?:ess)? (?:add|replace) (\S+) dev (\S+)", init)
    assert m, f"{name}: init_environment adds no address: {init!r}"
    assert str(ipaddress.ip_interface(m.group(1)).ip) == model["node"]["address"]
    assert m.group(2) == model["interface"]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_minion_gets_the_formula_from_top(kitchen: dict[str, Any], name: str) -> None:
    top = yaml.safe_load((ROOT / "salt" / "top.sls").read_text())["base"]
    mid = minion_id(kitchen, name)
    sls = [s for target, states in top.items() if fnmatch.fnmatch(mid, target) for s in states]
    assert "proxytier" in sls, f"salt/top.sls gives {mid} {sls}"


def in_netns(interface: str, address: str, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run cmd in a throwaway network namespace whose `interface` carries the node's address."""
    setup = (
        f"ip link add {interface} type veth peer name {interface}p && ip link set {interface} up && "
        f"ip link set {interface}p up && ip addr add {address}/24 dev {interface} && ip link set lo up && "
        'exec "$@"'
    )
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", setup, "sh", *cmd], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("nginx", "haproxy", "keepalived", "unshare", "ip")),
    reason="needs root, nginx, haproxy, keepalived, unshare and ip (make test installs them)",
)
@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_configs_pass_the_daemons_checks(kitchen: dict[str, Any], name: str, tmp_path: Path) -> None:
    """What the converge's check_cmds will say in the container, said here first."""
    _path, pillar = suite_pillar(kitchen, name)
    # nginx -t opens the exporter's access log (the formula makes its directory first): here, in tmp_path
    params = os_params(libexec_dir=str(FORMULA / "files"), exporter_log_dir=str(tmp_path), **HOST_CHECK_USER)
    model = build_model(pillar, minion_id(kitchen, name), params=params)
    checks = {
        "nginx.conf.jinja": ["nginx", "-t", "-q", "-c"],
        "haproxy.cfg.jinja": ["haproxy", "-c", "-q", "-f"],
        "keepalived.conf.jinja": [str(FORMULA / "files" / "check-keepalived")],
    }
    for template, cmd in checks.items():
        conf = tmp_path / template.removesuffix(".jinja")
        conf.write_text(render(template, model))
        res = in_netns(model["interface"], model["node"]["address"], [*cmd, str(conf)])
        assert res.returncode == 0, f"{name}: {cmd[0]} rejects {conf.name}:\n{res.stdout}{res.stderr}"


def verifier_args(kitchen: dict[str, Any]) -> list[str]:
    verifier = kitchen["verifier"]
    assert verifier["name"] == "shell"
    assert verifier.get("remote_exec", False) is False  # runs here: testinfra reaches into the container
    return shlex.split(verifier["command"])


def test_verifier_targets_the_kitchen_container_with_salt_call_local(kitchen: dict[str, Any]) -> None:
    args = verifier_args(kitchen)
    assert args[:3] == ["python3", "-m", "pytest"]
    # kitchen-docker keeps the container id in the instance state; the shell verifier exports it
    assert "--hosts=docker://${KITCHEN_CONTAINER_ID}" in args
    root_path = kitchen["provisioner"].get("root_path", "/tmp/kitchen")
    salt_config = kitchen["provisioner"].get("salt_config", "/etc/salt")
    salt_call = [a.split("=", 1)[1] for a in args if a.startswith("--salt-call=")]
    assert salt_call == [f"salt-call --local --config-dir={root_path}{salt_config}"]
    assert "--node-alone" in args  # one container: no VRRP peer


def test_verifier_runs_the_node_checks(kitchen: dict[str, Any]) -> None:
    tests = verifier_args(kitchen)[-1]
    assert (ROOT / tests).resolve() == ROOT / "tests" / "node"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", tests],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    collected = {line.split("::")[1].split("[")[0] for line in res.stdout.splitlines() if "::test_" in line}
    for expected in ("test_packages_installed", "test_daemon_running_and_enabled",
                     "test_config_is_this_nodes_and_accepted", "test_listeners",
                     "test_vrrp_master_exactly_where_the_vip_is_held", "test_exporter_collects_every_daemon"):
        assert expected in collected, f"tests/node does not collect {expected}: {sorted(collected)}"


def test_lab_runner_runs_the_same_checks_through_the_lab_master(
    kitchen: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lab.nodecheck runs the verifier's tests against 'proxy*' with testinfra's salt backend, whose
    LocalClient reads the master config SALT_MASTER_CONFIG names: the lab master's."""
    salt_config = pytest.importorskip("salt.config")
    import salt.syspaths

    from lab import config as lab_config
    from lab import nodecheck

    cmd = nodecheck.command()
    assert "--hosts=salt://proxy*" in cmd
    assert Path(cmd[-1]) == ROOT / verifier_args(kitchen)[-1]
    assert nodecheck.env()["SALT_MASTER_CONFIG"] == str(lab_config.SALT_CONFIG)
    # the mechanism: a client config loaded from the default path honours SALT_MASTER_CONFIG
    master = tmp_path / "master"
    master.write_text(yaml.safe_dump({"root_dir": str(tmp_path), "timeout": 77}))
    monkeypatch.setenv("SALT_MASTER_CONFIG", str(master))
    opts = salt_config.client_config(os.path.join(salt.syspaths.CONFIG_DIR, "master"))
    assert opts["timeout"] == 77 and opts["root_dir"] == str(tmp_path)
