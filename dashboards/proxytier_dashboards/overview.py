"""Tier overview: failover health, VRRP, BGP (vip_mode bgp), traffic and N-1 capacity, upstream errors and latency,
backend health across nodes, nginx connections, exporter health. Tier-wide numbers are over the
selected nodes (default all)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from proxytier_dashboards.panels import (
    BFD_CODES,
    GATE_CODE,
    GATE_CODES,
    RATE,
    SEL,
    SERVER_CODES,
    VRRP_CODES,
    Query,
    graph,
    mapping,
    new_dashboard,
    number,
    state_code,
    states,
)

UID = "proxytier-overview"
# Client requests entering the tier: HAProxy frontends, without the local monitor frontend keepalived asks.
FRONTEND_REQUESTS = (f'haproxy_frontend_http_requests_total{{{SEL}, proxy!="proxytier_monitor"}}')
ONE_PER_OBJECT = ((None, "red"), (1, "green"), (2, "red"))


def failover_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Failover health"))
        .with_panel(number(
            "MASTERs per VRRP instance",
            "Nodes reporting MASTER for each VRRP instance (sum over the 0/1 state series). Exactly 1 is healthy; "
            "0 = nobody serves the VIP, 2+ = split brain.",
            "none", [Query(f'sum by (vrrp_instance, vrid) (proxytier_keepalived_vrrp_state{{{SEL}, state="MASTER"}})',
                           "{{vrrp_instance}} (VRID {{vrid}})")], steps=ONE_PER_OBJECT, width=8))
        .with_panel(number(
            "Nodes holding each VIP",
            "Nodes whose kernel has the VIP on an interface. Exactly 1 is healthy; 0 = VIP lost, 2+ = duplicate VIP.",
            "none", [Query(f"sum by (vip) (proxytier_vip_owned{{{SEL}}})", "{{vip}}")], steps=ONE_PER_OBJECT, width=8))
        .with_panel(number(
            "Nodes reporting",
            "Exporters Prometheus scrapes successfully, of the tier's targets.",
            "none", [Query(f"sum(up{{{SEL}}})", "up"), Query(f"count(up{{{SEL}}})", "targets")],
            steps=((None, "blue"),), width=8))
    )


def vrrp_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("VRRP"))
        .with_panel(states(
            "VRRP state per node and instance",
            "keepalived state of every VRRP instance on every node over time: where each VIP's MASTER was.",
            [Query(state_code("proxytier_keepalived_vrrp_state", VRRP_CODES, "instance, vrrp_instance"),
                   "{{instance}} {{vrrp_instance}}")], mapping(VRRP_CODES), height=10))
        .with_panel(graph(
            "VRRP effective priority",
            "Priority after tracking adjustments; the highest wins MASTER. A drop means a tracked check fails.",
            "none", [Query(f"proxytier_keepalived_vrrp_effective_priority{{{SEL}}}",
                           "{{instance}} {{vrrp_instance}}")]))
        .with_panel(graph(
            "VRRP transitions",
            "Times a node became MASTER of an instance (keepalived events), per interval: each is a VIP move.",
            "none", [Query(f"sum by (instance, vrrp_instance) (increase("
                           f"proxytier_keepalived_vrrp_become_master_total{{{SEL}}}[{RATE}]))",
                           "{{instance}} {{vrrp_instance}}")]))
    )


def bgp_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    """vip_mode bgp (the exporter's bgp collector); empty in VRRP mode, where these metrics do not exist."""
    return (
        d.with_row(dashboard.Row("BGP (vip_mode bgp)"))
        .with_panel(number(
            "Nodes announcing (BGP)",
            "vip_mode bgp: nodes whose health gate announces the service addresses, of the nodes reporting a gate. "
            "Empty in VRRP mode.",
            "none", [Query(f"sum(proxytier_bgp_gate_announced{{{SEL}}})", "announcing"),
                     Query(f"count(proxytier_bgp_gate_announced{{{SEL}}})", "nodes")],
            steps=((None, "blue"),), width=8))
        .with_panel(states(
            "Announcement per node (BGP)",
            "vip_mode bgp: whether each node's gate announces the service addresses (HAProxy answers), has "
            "withdrawn them, or is held for maintenance (hold file). Empty in VRRP mode.",
            [Query(GATE_CODE, "{{instance}}")], mapping(GATE_CODES), width=16, height=6))
        .with_panel(graph(
            "BGP sessions established per node",
            "vip_mode bgp: BGP sessions in state Established on each node, of its configured sessions. Empty in "
            "VRRP mode.",
            "none", [Query(f'sum by (instance) (proxytier_bgp_session_state{{{SEL}, state="Established"}})',
                           "{{instance}} established"),
                     Query(f'count by (instance) (proxytier_bgp_session_state{{{SEL}, state="Established"}})',
                           "{{instance}} configured")], width=8, minimum=0))
        .with_panel(graph(
            "Routes exported per node (BGP)",
            "vip_mode bgp: routes BIRD exports to all of the node's BGP peers (service addresses x sessions up). "
            "Empty in VRRP mode.",
            "none", [Query(f"sum by (instance) (proxytier_bgp_routes_exported{{{SEL}}})", "{{instance}}")],
            width=8, minimum=0))
        .with_panel(states(
            "BFD per node and peer",
            "vip_mode bgp: state of the BFD session of each BGP peer that uses BFD. Empty in VRRP mode.",
            [Query(state_code("proxytier_bgp_bfd_session_state", BFD_CODES, "instance, peer"),
                   "{{instance}} {{peer}}")], mapping(BFD_CODES), width=8))
    )


def capacity_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    per_node = f"sum by (instance) (rate({FRONTEND_REQUESTS}[{RATE}]))"
    nodes = f"count(haproxy_process_max_connections{{{SEL}}})"
    max_conn = f"haproxy_process_max_connections{{{SEL}}}"
    return (
        d.with_row(dashboard.Row("Traffic and capacity"))
        .with_panel(graph(
            "Requests per node",
            "HTTP requests entering HAProxy's frontends on each node (the monitor frontend excluded).",
            "reqps", [Query(per_node, "{{instance}}")], stack=True))
        .with_panel(graph(
            "Each node's share of requests",
            "Fraction of the tier's requests each node's HAProxy receives. Even shares mean DNS round robin over "
            "the VIPs works; a node with none holds no VIP.",
            "percentunit", [Query(f"{per_node} / scalar(sum(rate({FRONTEND_REQUESTS}[{RATE}])))", "{{instance}}")],
            minimum=0))
        .with_panel(number(
            "N-1 headroom (connections)",
            "Share of the connection capacity left if the largest node failed: 1 - connections / (sum of HAProxy "
            "maxconn - largest maxconn). Below 0 the tier would not hold its clients without one node.",
            "percentunit",
            [Query(f"1 - sum(haproxy_process_current_connections{{{SEL}}}) / (sum({max_conn}) - max({max_conn}))",
                   "headroom")],
            steps=((None, "red"), (0, "orange"), (0.2, "green")), width=6, height=8))
        .with_panel(graph(
            "Per-node load if one node fails",
            "Requests per second each remaining node would carry if one node failed (tier total / (nodes - 1)), "
            "beside the busiest node now. Compare with the per-node throughput measured by `make bench`.",
            "reqps", [Query(f"sum(rate({FRONTEND_REQUESTS}[{RATE}])) / ({nodes} - 1)", "each node after losing one"),
                      Query(f"max({per_node})", "busiest node now")], width=18, height=8))
        .with_panel(graph(
            "HAProxy connections per node",
            "Current client connections of each HAProxy process, and its maxconn.",
            "short", [Query(f"haproxy_process_current_connections{{{SEL}}}", "{{instance}}"),
                      Query(f"max({max_conn})", "maxconn (per node)")], width=24))
    )


def by_status_panels(d: dashboard.Dashboard, label: str, metric: str, texts: dict[str, tuple[str, str]],
                     width: int) -> dashboard.Dashboard:
    """The three panels of a row per `label` (upstream, site) from nginx's `metric` pair
    (<metric>_requests_total by status_class, <metric>_request_duration_seconds histogram): requests by
    status (stacked), 5xx ratio, latency quantiles. `texts`: {"requests"|"errors"|"latency": (title,
    description)}; `width`: each panel's grid width."""
    requests = f"{metric}_requests_total{{{SEL}}}"
    buckets = f"{metric}_request_duration_seconds_bucket{{{SEL}}}"
    legend = f"{{{{{label}}}}}"
    return (
        d.with_panel(graph(
            *texts["requests"],
            "reqps", [Query(f"sum by ({label}, status_class) (rate({requests}[{RATE}]))",
                            f"{legend} {{{{status_class}}}}")], width=width, stack=True))
        .with_panel(graph(
            *texts["errors"],
            "percentunit",
            [Query(f'sum by ({label}) (rate({metric}_requests_total{{{SEL}, status_class="5xx"}}'
                   f"[{RATE}])) / sum by ({label}) (rate({requests}[{RATE}]))", legend)], width=width, minimum=0))
        .with_panel(graph(
            *texts["latency"],
            "s", [Query(f"histogram_quantile({q}, sum by ({label}, le) (rate({buckets}[{RATE}])))",
                        f"{legend} p{round(q * 100)}") for q in (0.5, 0.95, 0.99)], width=width))
    )


def upstream_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    texts = {
        "requests": ("Upstream requests by status",
                     "Requests nginx proxied to each upstream (application backends), by status class of the "
                     "response."),
        "errors": ("Upstream 5xx ratio",
                   "Share of each upstream's proxied requests answered with 5xx (alert ProxytierUpstreamErrors at "
                   "5%)."),
        "latency": ("Upstream latency",
                    "Request time seen by nginx for proxied requests ($request_time), quantiles over all selected "
                    "nodes."),
    }
    return (
        by_status_panels(d.with_row(dashboard.Row("Errors and latency per upstream")), "upstream",
                         "proxytier_nginx_upstream", texts, width=12)
        .with_panel(graph(
            "Retries",
            "nginx retries on another backend (proxy_next_upstream) per upstream, and HAProxy retries and "
            "redispatches to another nginx per backend: each is a failing backend or nginx node.",
            "reqps", [Query(f"sum by (upstream) (rate(proxytier_nginx_upstream_retries_total{{{SEL}}}[{RATE}]))",
                            "nginx {{upstream}}"),
                      Query(f"sum by (proxy) (rate(haproxy_backend_retry_warnings_total{{{SEL}}}[{RATE}]))",
                            "haproxy retries {{proxy}}"),
                      Query(f"sum by (proxy) (rate(haproxy_backend_redispatch_warnings_total{{{SEL}}}[{RATE}]))",
                            "haproxy redispatches {{proxy}}")]))
    )


def site_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    """Per site (exporter label `site`: the pillar's site names, __unclaimed__ for a Host no site claims)."""
    texts = {
        "requests": ("Site requests by status",
                     "Requests nginx answered for each site (routed by Host name, or owning its port), by status "
                     "class; __unclaimed__ is every Host no site claims (421 from nginx), one series whatever the "
                     "names."),
        "errors": ("Site 5xx ratio", "Share of each site's requests answered with 5xx."),
        "latency": ("Site latency", "Request time seen by nginx per site ($request_time), quantiles over all "
                                    "selected nodes."),
    }
    return by_status_panels(d.with_row(dashboard.Row("Sites")), "site", "proxytier_nginx_site", texts, width=8)


def backend_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    distinct_states = f"count by (proxy, server, state) (haproxy_server_status{{{SEL}}} == 1)"
    return (
        d.with_row(dashboard.Row("Backend health across nodes"))
        .with_panel(states(
            "Backend health matrix",
            "State of every HAProxy server (nginx on each node) as seen by each node's HAProxy. Rows of the same "
            "server should agree; a server DOWN for some nodes only is a path problem between them.",
            [Query(state_code("haproxy_server_status", SERVER_CODES, "instance, proxy, server"),
                   "{{proxy}}/{{server}} seen by {{instance}}")], mapping(SERVER_CODES), width=18, height=10))
        .with_panel(number(
            "Servers the nodes disagree about",
            "Servers for which the nodes' HAProxies report different states (alert "
            "ProxytierServerHealthDisagreement after 2 minutes).",
            "none", [Query(f"count(count by (proxy, server) ({distinct_states}) > 1) or vector(0)", "servers")],
            steps=((None, "green"), (1, "red")), width=6, height=10))
        .with_panel(graph(
            "Servers UP per backend and node",
            "Active (non-backup) servers UP in each HAProxy backend, per node.",
            "none", [Query(f"haproxy_backend_active_servers{{{SEL}}}", "{{instance}} {{proxy}}")], width=24,
            minimum=0))
    )


def nginx_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("nginx connections"))
        .with_panel(graph(
            "nginx active connections per node",
            "Client connections of nginx (from HAProxy), including idle keep-alive ones (stub_status Active).",
            "short", [Query(f"nginx_connections_active{{{SEL}}}", "{{instance}}")]))
        .with_panel(graph(
            "nginx dropped connections",
            "Connections nginx accepted but did not handle (worker_connections or file limit reached).",
            "cps", [Query(f"sum by (instance) (rate(nginx_connections_accepted{{{SEL}}}[{RATE}]) "
                          f"- rate(nginx_connections_handled{{{SEL}}}[{RATE}]))", "{{instance}}")], minimum=0))
    )


def exporter_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Exporter and collectors"))
        .with_panel(states(
            "Collector success",
            "Whether each collector of each node's exporter read its daemon in the last scrape.",
            [Query(f"proxytier_collector_success{{{SEL}}}", "{{instance}} {{collector}}")],
            mapping({1: ("OK", "green"), 0: ("FAILING", "red")}), width=12))
        .with_panel(graph(
            "Collector duration",
            "Time each collector took during the scrape.",
            "s", [Query(f"proxytier_collector_duration_seconds{{{SEL}}}", "{{instance}} {{collector}}")]))
    )


def build() -> dashboard.Dashboard:
    d = new_dashboard(UID, "proxytier / Tier overview",
                      "Failover health, traffic and capacity of a proxytier tier (keepalived or BGP, HAProxy, nginx).",
                      multi_instance=True)
    for row in (failover_row, vrrp_row, bgp_row, capacity_row, site_row, upstream_row, backend_row, nginx_row,
                exporter_row):
        d = row(d)
    return d

