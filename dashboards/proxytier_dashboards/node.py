"""Per-node drill-down: one node's VRRP instances and VIPs, HAProxy, nginx and exporter."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from proxytier_dashboards.panels import (
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
    d = new_dashboard(UID, "proxytier / Node", "One proxytier node: VRRP and VIPs, HAProxy, nginx, exporter.",
                      multi_instance=False)
    for row in (vrrp_row, haproxy_row, nginx_row, exporter_row):
        d = row(d)
    return d
