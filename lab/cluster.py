"""The whole lab: up (clean leftovers, image, bridge, backends, master, nodes, keys) and down."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from lab import config, image, master, net, nodes, prometheus, router, tier
from lab.sh import LabError, log, run, step, wait_for


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridge, systemd-nspawn): run it with sudo")


def down() -> None:
    """Remove everything the lab made (also what a killed run left): nodes, the BGP router and client,
    backends, master, bridge, state."""
    require_root()
    with step("lab down: stopping nodes, router, backends, salt-master, Prometheus; removing bridge and state",
              "10 s"):
        nodes.clean_nodes()
        router.clean()  # before the backends': that deletes every ptlab-* namespace, not the processes in them
        net.clean_backends()
        prometheus.stop()
        master.stop()
        for link in net.lab_links():
            run(["ip", "link", "del", link], check=False)
        net.bridge_down()
        shutil.rmtree(config.STATE, ignore_errors=True)


def boot_nodes(names: list[config.Node], timeout: float = 180) -> float:
    """Start nodes (keeping their overlays) and wait until systemd inside is up; returns seconds."""
    t0 = time.monotonic()
    for node in names:
        nodes.start(node)
    for node in names:
        nodes.wait_booted(node, timeout=timeout)
    return round(time.monotonic() - t0, 2)


def up(count: int | None = None) -> dict[str, float]:
    """Bring the whole lab up from scratch with `count` nodes (proxy1..proxyN, default: DEFAULT_NODES, or
    PROXYTIER_LAB_NODES); returns timings (seconds) of the long steps."""
    require_root()
    count = count or int(os.environ.get("PROXYTIER_LAB_NODES") or config.DEFAULT_NODES)
    if not 1 <= count <= config.MAX_NODES:
        raise LabError(f"the lab runs 1..{config.MAX_NODES} nodes (its VIP pool has {config.MAX_NODES} addresses), "
                       f"not {count}")
    try:
        config.check_platform()
    except ValueError as e:
        raise LabError(str(e)) from e
    timings: dict[str, float] = {}
    t_all = time.monotonic()
    down()
    log(f"lab platform: {config.RELEASES[config.RELEASE]} ({config.RELEASE}) nodes, Salt {config.SALT_VERSION}")
    timings.update(image.build())
    config.STATE.mkdir(parents=True, exist_ok=True)
    config.set_nodes(range(1, count + 1), save=True)
    with step(f"bridge {config.BRIDGE} {config.HOST_ADDR}/{config.PREFIX} and backends be1..be3", "5 s"):
        net.bridge_up()
        for be in config.BACKENDS:
            net.backend_up(be)
    with step("salt-master on the bridge (salt/ and pillar/ of this checkout)", "10 s"):
        master.start()
    with step(f"Prometheus on {prometheus.URL} (the project's rules; scrapes every node's exporter)", "5 s"):
        prometheus.start()
    for node in config.NODES:
        nodes.prepare(node)
    with step(f"booting {', '.join(n.name for n in config.NODES)} (systemd-nspawn)", "15 s") as t:
        boot_nodes(config.NODES)
    timings["boot"] = t["seconds"]
    with step("accepting node keys; waiting for test.ping; publishing addresses to the mine", "20 s") as t:
        join_master(config.NODES)
    timings["keys_and_ping"] = t["seconds"]
    prometheus.sync_targets()
    timings["lab_up"] = round(time.monotonic() - t_all, 2)
    record(timings)
    log(f"lab is up in {timings['lab_up']:.0f} s. Run salt against it:  . lab/env && salt 'proxy*' test.ping")
    return timings


def join_master(new: list[config.Node]) -> None:
    """Accept the nodes' keys (exactly theirs: no auto_accept), wait until they answer, sync the formula's
    modules to them and publish their addresses to the mine (the lab pillar's members come from there)."""
    names = [n.name for n in new]
    master.accept_keys(names)
    # a ping published before a minion is connected costs a full gather timeout: wait for them
    wait_for("salt-minions ready", lambda: all(nodes.minion_ready_count(n) for n in new), 120)
    master.wait_ping(names)
    listed = ["-L", ",".join(names)]
    master.sync(listed)
    master.salt(["salt", *listed, "mine.update"], timeout=60, check=True)


def add_node() -> config.Node:
    """Boot the lowest-numbered lab node not running (a fresh machine with a salt-minion), accept its key and
    publish its address to the mine. It is a member from then on, serving nothing yet: the formula makes it
    serve (`salt-run state.orchestrate proxytier.orch.join pillar='{"node": "proxyN"}'`)."""
    require_root()
    try:
        config.check_running_platform()
    except ValueError as e:
        raise LabError(str(e)) from e
    free = [i for i in range(1, config.MAX_NODES + 1) if config.lab_node(i) not in config.NODES]
    if not free:
        raise LabError(f"the lab already runs its {config.MAX_NODES} nodes")
    node = config.lab_node(free[0])
    nodes.prepare(node)
    with step(f"booting {node.name} at {node.address}; accepting its key; mine.update", "20 s"):
        boot_nodes([node])
        config.set_nodes([config.node_index(n.name) for n in config.NODES] + [free[0]], save=True)
        join_master([node])
    return node


def join_node() -> tuple[config.Node, float]:
    """add_node(), then the formula's join of it, then Prometheus' targets from the mine (the lab's stand-in
    for `monitoring_tgt`); returns the node and the seconds from its key's acceptance to it serving."""
    node = add_node()
    seconds = tier.join(node.name)
    prometheus.sync_targets()
    return node, seconds


def leave_node(name: str) -> float:
    """The formula's leave of a lab node, then Prometheus' targets from the mine (before the machine goes),
    then remove_node(); returns the seconds the leave orchestration took."""
    seconds = tier.leave(name)
    prometheus.sync_targets()
    remove_node(name)
    return seconds


def remove_node(name: str) -> None:
    """Power a lab node off and forget it (its overlay, its key on the master). Run the formula's leave
    first (`salt-run state.orchestrate proxytier.orch.leave pillar='{"node": "proxyN"}'`), which also deletes
    its key; this removes what is left, whatever the leave did."""
    require_root()
    node = config.node(name)
    if node not in config.NODES:
        raise LabError(f"{name} is not a node of the running lab ({', '.join(n.name for n in config.NODES)})")
    if len(config.NODES) == 1:
        raise LabError("the lab keeps at least one node")
    with step(f"powering {name} off; deleting its key and overlay", "10 s"):
        nodes.stop(node)
        master.salt(["salt-key", "-y", "-d", name], timeout=30, check=False)
        config.set_nodes([config.node_index(n.name) for n in config.NODES if n != node], save=True)
        shutil.rmtree(node.dir, ignore_errors=True)
    prometheus.sync_targets()


def record(values: dict[str, Any]) -> None:
    """Merge measurements into the results file (kept across `down`, next to the image cache)."""
    config.CACHE.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(config.RESULTS.read_text())
    except (OSError, ValueError):
        data = {}
    prefix = "" if config.PLATFORM == config.DEFAULT_PLATFORM else f"{config.PLATFORM}: "
    data.update({prefix + k: v for k, v in values.items()})
    data[prefix + "recorded_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    config.RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def status() -> list[str]:
    lines = []
    for node in config.NODES:
        pid = nodes.nspawn_pid(node)
        state = nodes.system_state(node) if pid else "stopped"
        addrs = nodes.addresses(node) if pid else []
        lines.append(f"{node.name:<8} {state:<10} nspawn pid {pid or '-':<8} host0 {' '.join(addrs)}")
    for be in config.BACKENDS:
        try:
            ok = net.backend_health(be)
        except OSError:
            ok = False
        lines.append(f"{be.name:<8} {'healthy' if ok else 'DOWN':<10} {be.address}:{be.port}")
    return lines
