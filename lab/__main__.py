"""python -m lab {up,down,status,demo,load,apply,add-node,remove-node,vhosts,dualstack,bgp}: the lab's command line
(run as root)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from lab import bgp, cluster, config, dualstack, master, nodes, prometheus, router, tier, vhosts
from lab.load import run_load, table
from lab.sh import LabError, log, step

HOW_TO = f"""
How to use the lab
  Salt against the lab master:   . lab/env          (then, literally)
                                 salt 'proxy*' test.ping
                                 salt 'proxy*' state.apply
                                 salt proxy1 cmd.run 'ip -4 addr show host0'
  Bounded load through the VIPs: .venv/bin/python -m lab load --requests 600 --concurrency 4
  Lab status:                    .venv/bin/python -m lab status
  Grow / shrink the tier:        .venv/bin/python -m lab add-node       (boots proxyN, accepts its key,
                                     salt-run state.orchestrate proxytier.orch.join pillar='{{"node": "proxyN"}}')
                                 .venv/bin/python -m lab remove-node proxyN   (proxytier.orch.leave, power off)
  Many sites on the VIPs:         .venv/bin/python -m lab vhosts [--off]   (3 host-routed sites, TLS by SNI)
  Dual stack (IPv6 VIPs too):     .venv/bin/python -m lab dualstack [--off]  (2001:2::10K beside 198.18.0.10K)
  BGP mode (a router, ECMP):      .venv/bin/python -m lab bgp [--profile resilient] [--off]
                                     (every node announces {config.BGP_SERVICE}; a client at {config.CLIENT_ADDR})
  A shell on a node:             nsenter -t $(.venv/bin/python -m lab leader proxy1) -a /bin/bash
  Pillar served to the nodes:    pillar/ of this checkout (override a file by copying it into
                                 {config.PILLAR_OVERRIDE}/ and editing the copy)
  Exporter metrics (each node):  curl http://{config.NODES[0].address}:{config.EXPORTER_PORT}/metrics
                                 (the formula's default port; see exporter/README.md)
  Prometheus (project's rules):  http://{config.HOST_ADDR}:9090/alerts  (e.g. curl .../api/v1/query?query=up)
  Dashboards:                    dashboards/grafana/*.json; evaluate every panel against the lab:
                                 cd dashboards && ../.venv/bin/python -m proxytier_dashboards probe \
                                     http://{config.HOST_ADDR}:9090 --job proxytier
  Measurements of lab runs:      {config.RESULTS}
  Tear it all down:              make lab-down
"""


def state_apply(visible: bool) -> tuple[int, float]:
    """`salt 'proxy*' state.apply` against the lab; prints the summary when visible."""
    cmd = [str(master.WRAPPER_DIR / "salt"), "proxy*", "state.apply", "--state-output=terse", "--force-color"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=master.env(), check=False, capture_output=not visible, text=True, timeout=900)
    return proc.returncode, round(time.monotonic() - t0, 1)


def demo(count: int | None = None) -> None:
    cluster.up(count)
    print("\n$ salt 'proxy*' state.apply", flush=True)
    with step("salt 'proxy*' state.apply (installs nginx, haproxy, keepalived from the nodes' apt)", "1-2 min") as t:
        rc, _ = state_apply(visible=True)
    if rc != 0:
        raise LabError(f"state.apply failed (exit {rc}); see the output above")
    cluster.record({"demo_first_apply": t["seconds"]})
    tier.wait_vips_settled()
    holders = nodes.vip_holders()
    requests = 300 * len(config.VIPS)
    with step(f"bounded burst: {requests} requests through the {len(config.VIPS)} VIPs, 6 at a time", "10 s"):
        result = run_load(config.VIPS, requests=requests, seconds=60, concurrency=6)
    print("\nVIP             held by   requests")
    for vip in config.VIPS:
        print(f"{vip:<15} {','.join(holders[vip]):<9} {result.by_target[vip]}")
    print()
    print(table(result))
    show_vhosts()
    print(HOW_TO)


def show_vhosts() -> None:
    """Many sites on the same VIPs: apply the lab's host-routed sites, print one line per host name."""
    with step("many sites on the same VIPs: 3 sites routed by host name on 80 and 443 (TLS by SNI)", "1 min"):
        _, cafile = vhosts.enable()
    print(f"\nhttps://<host>/lab through the {len(config.VIPS)} VIPs (certificates verified against the lab CA, "
          f"{cafile}):")
    print("\n".join(vhosts.routing_table(cafile)))
    print(f"  curl --cacert {cafile} --resolve www.example.com:443:{config.VIPS[0]} https://www.example.com/lab")
    print("  back to the one site of pillar/: .venv/bin/python -m lab vhosts --off")


def show_dualstack() -> None:
    """Apply the dual-stack pillar; print, per VIP of both families, its holder and who answered."""
    with step("dual stack: an IPv6 VIP beside each IPv4 VIP (VRRPv3), backends of both families", "1 min"):
        dualstack.enable()
    vips = config.VIPS + config.VIPS6
    tier.wait_vips_settled(vips=vips)
    holders = nodes.vip_holders(vips)
    print(f"\n{'VIP':<16} {'held by':<8} {'nginx nodes':<21} {'backends':<12} client address seen")
    for vip in vips:
        result = run_load([vip], requests=60, seconds=30, concurrency=3)
        print(f"{vip:<16} {','.join(holders[vip]):<8} {','.join(sorted(result.by_node)):<21} "
              f"{','.join(sorted(result.by_backend)):<12} {','.join(sorted(result.clients))}"
              + (f"  ({result.failed} failed)" if result.failed else ""))
    print("  back to IPv4 only: .venv/bin/python -m lab dualstack --off")


def show_bgp(profile: str) -> None:
    """BGP mode on (or its router's profile switched), then who answers through the service address."""
    if tier.current_pillar() == bgp.pillar() and router.running():
        with step(f"the router's ECMP: {profile}", "5 s"):
            bgp.set_profile(profile)
    else:
        with step(f"BGP mode: router {config.ROUTER_ADDR} ({profile} ECMP), every node announcing "
                  f"{config.BGP_SERVICE}", "1 min"):
            bgp.enable(profile)
    print("\n".join(bgp.show()))
    print(f"  a shell on the client: ip netns exec {config.CLIENT_NETNS} curl -s http://{config.BGP_SERVICE}/lab")
    print(f"  the router: ip netns exec {config.ROUTER_NETNS} birdc -s {router.BIRD_CTL} show route")
    print("  back to VRRP: .venv/bin/python -m lab bgp --off")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    nodes_help = f"proxy nodes, 2..{config.MAX_NODES} (default {config.DEFAULT_NODES}; env PROXYTIER_LAB_NODES)"
    sub.add_parser("up", help="bring the lab up (cleans leftovers first)").add_argument("--nodes", type=int,
                                                                                       help=nodes_help)
    sub.add_parser("down", help="remove everything the lab made")
    sub.add_parser("status", help="nodes, backends, VIP holders")
    sub.add_parser("demo", help="up + state.apply + a bounded burst with its spread").add_argument(
        "--nodes", type=int, help=nodes_help)
    sub.add_parser("add-node", help="boot the next node, accept its key, run the formula's join orchestration")
    sub.add_parser("remove-node", help="run the formula's leave orchestration for NODE, then power it off"
                   ).add_argument("node")
    sub.add_parser("apply", help="salt 'proxy*' state.apply against the lab")
    sub.add_parser("vhosts", help="apply 3 host-routed sites with TLS by SNI, show who answers each host name"
                   ).add_argument("--off", action="store_true", help="back to the checkout's pillar")
    sub.add_parser("dualstack", help="apply the dual-stack pillar (IPv6 VIPs too), show who answers on each VIP"
                   ).add_argument("--off", action="store_true", help="back to the checkout's pillar (IPv4 only)")
    p_bgp = sub.add_parser("bgp", help="BGP mode: a router and a client, every node announcing one service "
                           "address; show who answers")
    p_bgp.add_argument("--off", action="store_true", help="back to the checkout's pillar (VRRP), router removed")
    p_bgp.add_argument("--profile", choices=router.PROFILES, default="plain",
                       help="the router's ECMP: plain multipath or a resilient next-hop group")
    p_leader = sub.add_parser("leader", help="host pid of a node's init (for nsenter -t PID -a)")
    p_leader.add_argument("node")
    p_load = sub.add_parser("load", help="bounded load through the VIPs (or --target)")
    p_load.add_argument("--target", action="append", help="lab address (default: every VIP)")
    p_load.add_argument("--requests", type=int, default=600)
    p_load.add_argument("--seconds", type=float, default=30)
    p_load.add_argument("--concurrency", type=int, default=4)
    p_load.add_argument("--keepalive", action="store_true", help="reuse connections (default: new per request)")
    p_load.add_argument("--timeout", type=float, default=2.0, help="seconds a request may take (default 2)")
    p_load.add_argument("--rate", type=float, default=0.0,
                        help="requests per second over all workers (default 0: as fast as they answer)")
    p_load.add_argument("--json", action="store_true", help="print the counts as one JSON line, not a table")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            cluster.up(args.nodes)
        elif args.cmd == "down":
            cluster.down()
        elif args.cmd == "status":
            print("\n".join(cluster.status() + router.status()))
            for vip, held in nodes.vip_holders(tier.served_vips()).items():
                print(f"VIP {vip:<15} held by {', '.join(held) or 'nobody'}")
        elif args.cmd == "demo":
            demo(args.nodes)
        elif args.cmd == "add-node":
            print("\n$ salt-run state.orchestrate proxytier.orch.join pillar='{\"node\": \"<the new node>\"}'")
            with step("a new node, then the formula's join (serve first, then its peers, then its VRRP)", "2 min"):
                node, seconds = cluster.join_node()
            print(f"{node.name} serves {seconds:.0f} s after its key was accepted; Prometheus scrapes: "
                  f"{', '.join(prometheus.sync_targets())}")
        elif args.cmd == "remove-node":
            print(f"\n$ salt-run state.orchestrate proxytier.orch.leave pillar='{{\"node\": \"{args.node}\"}}'")
            with step(f"the formula's leave of {args.node} (drain, hand its VIPs over, the rest converge)", "1 min"):
                cluster.leave_node(args.node)
        elif args.cmd == "apply":
            return state_apply(visible=True)[0]
        elif args.cmd == "vhosts":
            if args.off:
                vhosts.disable()
            else:
                show_vhosts()
        elif args.cmd == "dualstack":
            if args.off:
                dualstack.disable()
            else:
                show_dualstack()
        elif args.cmd == "bgp":
            if args.off:
                bgp.disable()
            else:
                show_bgp(args.profile)
        elif args.cmd == "leader":
            print(nodes.leader(config.node(args.node)))
        elif args.cmd == "load":
            result = run_load(
                args.target,
                requests=args.requests,
                seconds=args.seconds,
                concurrency=args.concurrency,
                new_connection=not args.keepalive,
                timeout=args.timeout,
                rate=args.rate,
            )
            print(json.dumps(result.as_dict()) if args.json else table(result))
            return 0 if result.failed == 0 else 1
    except LabError as e:
        log(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
