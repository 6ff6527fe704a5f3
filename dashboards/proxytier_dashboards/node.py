"""Per-node drill-down: one node's VRRP instances and VIPs (or its BGP gate, sessions and BFD), HAProxy, nginx and
exporter."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from proxytier_dashboards.panels import (
    BFD_CODES,
    BGP_CODES,
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

UID = "proxytier-node"


def vrrp_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("VRRP and VIPs"))
        .with_panel(states(
            "VRRP state",
            "keepalived state of each VRRP instance on this node.",
            [Query(state_code("proxytier_keepalived_vrrp_state", VRRP_CODES, "vrrp_instance"), "{{vrrp_instance}}")],
            mapping(VRRP_CODES), width=16, height=6))
        .with_panel(number(
            "VIPs held",
            "Whether this node's kernel has each VIP on an interface (independently of keepalived).",
            "none", [Query(f"proxytier_vip_owned{{{SEL}}}", "{{vip}}")], steps=((None, "text"),),
            mappings=mapping({1: ("held", "green"), 0: ("not held", "text")}), width=8))
        .with_panel(graph(
            "VRRP priority",
            "Configured (base) and effective priority of each instance on this node.",
            "none", [Query(f"proxytier_keepalived_vrrp_base_priority{{{SEL}}}", "base {{vrrp_instance}}"),
                     Query(f"proxytier_keepalived_vrrp_effective_priority{{{SEL}}}", "effective {{vrrp_instance}}")]))
        .with_panel(graph(
            "VRRP transitions",
            "Times this node became or stopped being MASTER of each instance, per interval.",
            "none", [Query(f"sum by (vrrp_instance) (increase(proxytier_keepalived_vrrp_become_master_total{{{SEL}}}"
                           f"[{RATE}]))", "became MASTER {{vrrp_instance}}"),
                     Query(f"sum by (vrrp_instance) (increase(proxytier_keepalived_vrrp_release_master_total{{{SEL}}}"
                           f"[{RATE}]))", "released MASTER {{vrrp_instance}}")]))
    )


def bgp_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    """vip_mode bgp (the exporter's bgp collector); empty in VRRP mode, where these metrics do not exist."""
    return (
        d.with_row(dashboard.Row("BGP (vip_mode bgp)"))
        .with_panel(states(
            "Announcement (BGP gate)",
            "vip_mode bgp: whether this node's gate announces the service addresses (HAProxy answers its monitor "
            "URI), has withdrawn them, or is held (hold file). Empty in VRRP mode.",
            [Query(GATE_CODE, "gate")], mapping(GATE_CODES), width=16, height=6))
        .with_panel(graph(
            "Since the gate's last change",
            "vip_mode bgp: time since this node's gate last announced or withdrew the addresses. Empty in VRRP mode.",
            "s", [Query(f"time() - proxytier_bgp_gate_last_change_timestamp_seconds{{{SEL}}}", "since")],
            width=8, height=6))
        .with_panel(states(
            "BGP session state per peer",
            "vip_mode bgp: BIRD's state of each BGP session of this node (peer = BIRD protocol, peer<n> in pillar "
            "order). Empty in VRRP mode.",
            [Query(state_code("proxytier_bgp_session_state", BGP_CODES, "peer, peer_address"),
                   "{{peer}} ({{peer_address}})")], mapping(BGP_CODES), width=12))
        .with_panel(graph(
            "Routes exported per peer",
            "vip_mode bgp: routes BIRD exports to each BGP peer, per channel (the service addresses while "
            "announced). Empty in VRRP mode.",
            "none", [Query(f"proxytier_bgp_routes_exported{{{SEL}}}", "{{peer}} {{channel}}")], minimum=0))
        .with_panel(states(
            "BFD state per peer",
            "vip_mode bgp: state of the BFD session of each BGP peer that uses BFD. Empty in VRRP mode.",
            [Query(state_code("proxytier_bgp_bfd_session_state", BFD_CODES, "peer, peer_address"),
                   "{{peer}} ({{peer_address}})")], mapping(BFD_CODES), width=24, height=6))
    )


def haproxy_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("HAProxy"))
        .with_panel(graph(
            "Requests per frontend",
            "HTTP requests received by each HAProxy frontend of this node.",
            "reqps", [Query(f"sum by (proxy) (rate(haproxy_frontend_http_requests_total{{{SEL}}}[{RATE}]))",
                            "{{proxy}}")]))
        .with_panel(graph(
            "Responses by code",
            "HTTP responses of this node's HAProxy frontends by status class.",
            "reqps", [Query(f"sum by (code) (rate(haproxy_frontend_http_responses_total{{{SEL}}}[{RATE}]))",
                            "{{code}}")], stack=True))
        .with_panel(states(
            "Server status",
            "State of each HAProxy server (nginx on each node) as this node's HAProxy sees it.",
            [Query(state_code("haproxy_server_status", SERVER_CODES, "proxy, server"), "{{proxy}}/{{server}}")],
            mapping(SERVER_CODES), width=12))
        .with_panel(graph(
            "Connections",
            "Current client connections of the HAProxy process and its maxconn.",
            "short", [Query(f"haproxy_process_current_connections{{{SEL}}}", "current"),
                      Query(f"haproxy_process_max_connections{{{SEL}}}", "maxconn")]))
        .with_panel(graph(
            "Backend errors, retries and redispatches",
            "Per backend: failed connections and responses to nginx, retries, and redispatches to another nginx.",
            "reqps", [Query(f"sum by (proxy) (rate(haproxy_backend_{name}_total{{{SEL}}}[{RATE}]))",
                            f"{name.replace('_', ' ')} {{{{proxy}}}}")
                      for name in ("connection_errors", "response_errors", "retry_warnings", "redispatch_warnings")]))
        .with_panel(graph(
            "Backend sessions and queue",
            "Current sessions and queued requests per backend.",
            "short", [Query(f"haproxy_backend_current_sessions{{{SEL}}}", "sessions {{proxy}}"),
                      Query(f"haproxy_backend_current_queue{{{SEL}}}", "queued {{proxy}}")]))
    )


def nginx_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    buckets = f"proxytier_nginx_upstream_request_duration_seconds_bucket{{{SEL}}}"
    return (
        d.with_row(dashboard.Row("nginx"))
        .with_panel(graph(
            "Connections by state",
            "nginx client connections: reading a request, writing a response, idle keep-alive (stub_status).",
            "short", [Query(f"nginx_connections_{s}{{{SEL}}}", s) for s in ("reading", "writing", "waiting")],
            stack=True))
        .with_panel(graph(
            "Requests and dropped connections",
            "Requests nginx handled, and connections it accepted but did not handle.",
            "reqps", [Query(f"rate(nginx_http_requests_total{{{SEL}}}[{RATE}])", "requests"),
                      Query(f"rate(nginx_connections_accepted{{{SEL}}}[{RATE}]) "
                            f"- rate(nginx_connections_handled{{{SEL}}}[{RATE}])", "dropped connections")]))
        .with_panel(graph(
            "Upstream requests by status",
            "Requests this node's nginx proxied to each upstream, by status class, and its retries.",
            "reqps", [Query(f"sum by (upstream, status_class) (rate(proxytier_nginx_upstream_requests_total{{{SEL}}}"
                            f"[{RATE}]))", "{{upstream}} {{status_class}}"),
                      Query(f"sum by (upstream) (rate(proxytier_nginx_upstream_retries_total{{{SEL}}}[{RATE}]))",
                            "{{upstream}} retries")]))
        .with_panel(graph(
            "Upstream latency",
            "Request time of proxied requests on this node ($request_time), quantiles per upstream.",
            "s", [Query(f"histogram_quantile({q}, sum by (upstream, le) (rate({buckets}[{RATE}])))",
                        f"{{{{upstream}}}} p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]))
    )


def exporter_row(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Exporter"))
        .with_panel(states(
            "Collector success",
            "Whether each collector read its daemon in the last scrape.",
            [Query(f"proxytier_collector_success{{{SEL}}}", "{{collector}}")],
            mapping({1: ("OK", "green"), 0: ("FAILING", "red")}), width=12, height=6))
        .with_panel(graph(
            "Collector duration",
            "Time each collector took during the scrape.",
            "s", [Query(f"proxytier_collector_duration_seconds{{{SEL}}}", "{{collector}}")], height=6))
        .with_panel(graph(
            "Access-log lines",
            "Access-log lines the exporter received from nginx, and lines it could not parse.",
            "cps", [Query(f"rate(proxytier_nginx_access_log_lines_total{{{SEL}}}[{RATE}])", "lines"),
                    Query(f"rate(proxytier_nginx_access_log_malformed_total{{{SEL}}}[{RATE}])", "malformed")]))
        .with_panel(graph(
            "Exporter process",
            "CPU used by the exporter process (share of one core).",
            "percentunit", [Query(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "CPU")]))
        .with_panel(graph(
            "Exporter memory",
            "Resident memory of the exporter process.",
            "bytes", [Query(f"process_resident_memory_bytes{{{SEL}}}", "resident memory")], width=24, height=6))
    )


def build() -> dashboard.Dashboard:
    d = new_dashboard(UID, "proxytier / Node", "One proxytier node: VRRP and VIPs or BGP, HAProxy, nginx, exporter.",
                      multi_instance=False)
    for row in (vrrp_row, bgp_row, haproxy_row, nginx_row, exporter_row):
        d = row(d)
    return d
