"""The Prometheus recording and alert rules, written once in Python (the monitoring-mixin shape): the tier's
selector and the runbook's base URL are parameters, expanded into every expression and every `runbook_url`.
`python -m proxytier_dashboards generate` writes `dashboards/rules/proxytier.rules.yml` (the defaults) and the
formula's template of it (`proxytier_monitoring:runbook_url` filled in by Salt); edit this file, never those."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

# Every rule selects the tier's scrape jobs with this matcher: one job per tier ("proxytier", "proxytier-eu",
# ...; proxytier.monitoring names it so), every aggregation keeps `job`, so several tiers share one Prometheus.
DEFAULT_SELECTOR = 'job=~"proxytier.*"'
# The runbook as a Prometheus console page (proxytier.monitoring installs it in Debian's default
# --web.console.templates directory, /etc/prometheus/consoles): `$externalURL` is the Prometheus that fired
# the alert, the same base Alertmanager's "Source" links use, so no host name is made up here.
RUNBOOK_PAGE = "proxytier-runbook.html"
DEFAULT_RUNBOOK_URL = "{{ $externalURL }}/consoles/" + RUNBOOK_PAGE
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Record:
    """A recording rule; `comment` becomes YAML comment lines above it."""

    record: str
    expr: str
    comment: str = ""


@dataclass(frozen=True)
class Alert:
    """An alert rule. `fires_when` is the one-line condition of the README's alert table (not in the YAML);
    the runbook section is `anchor`, the alert's name in lower case."""

    alert: str
    expr: str
    severity: str
    summary: str
    description: str
    fires_when: str
    for_: str = ""
    comment: str = ""

    @property
    def anchor(self) -> str:
        """The runbook heading's anchor (GitHub's slug of a CamelCase heading)."""
        return self.alert.lower()


@dataclass(frozen=True)
class Group:
    """A rule group."""

    name: str
    rules: tuple[Record | Alert, ...]


STATE = "proxytier_keepalived_vrrp_state"
MASTER, UNKNOWN, FAULT, DOWN = 'state="MASTER"', 'state="UNKNOWN"', 'state="FAULT"', 'state="DOWN"'
HAPROXY_COLLECTOR, STATUS_5XX = 'collector="haproxy"', 'status_class="5xx"'
UPSTREAM_REQUESTS = "proxytier_nginx_upstream_requests_total"
ESTABLISHED, UP = 'state="Established"', 'state="Up"'


def groups(selector: str = DEFAULT_SELECTOR) -> list[Group]:
    """Every rule group, with `selector` (one or more PromQL label matchers; default DEFAULT_SELECTOR) in
    every metric selector."""

    def m(metric: str, *matchers: str) -> str:
        return f"{metric}{{{', '.join((selector, *matchers))}}}"

    parts = (_recording, _vrrp, _bgp, _haproxy, _nginx, _capacity, _exporter)
    return [part(m, selector) for part in parts]


def _recording(m: Callable[..., str], selector: str) -> Group:
    """Recording rules: MASTERs and VIP holders per tier, per node, and the N-1 capacity."""
    return Group("proxytier-recording", (
        Record("proxytier:vrrp_masters:sum", f'sum by (job, vrrp_instance, vrid) ({m(STATE, MASTER)})',
               "MASTERs per VRRP instance across the tier. `sum` over the 0/1 state-set series, so an instance every\n"
               "node reports without a MASTER is 0 (a `count` would be no series at all)."),
        Record("proxytier:vip_holders:sum", f"sum by (job, vip) ({m('proxytier_vip_owned')})",
               "Nodes holding each VIP (kernel addresses), across the tier."),
        Record("instance:proxytier_vrrp_masters:sum", f'sum by (job, instance) ({m(STATE, MASTER)})',
               "VRRP instances this node is MASTER of, and VIPs it holds. The formula renders one VIP per VRRP\n"
               "instance, so on a healthy node the two are equal."),
        Record("instance:proxytier_vips_owned:sum", f"sum by (job, instance) ({m('proxytier_vip_owned')})"),
        Record("proxytier:haproxy_current_connections:sum",
               f"sum by (job) ({m('haproxy_process_current_connections')})",
               "N-1 capacity, in HAProxy connections: what the tier holds now, and what it could hold without its\n"
               "largest node (sum of maxconn minus the largest maxconn)."),
        Record("proxytier:haproxy_max_connections_n_minus_1:sum",
               f"sum by (job) ({m('haproxy_process_max_connections')})\n"
               f"- max by (job) ({m('haproxy_process_max_connections')})"),
        Record("proxytier:haproxy_connections_n_minus_1:ratio",
               "proxytier:haproxy_current_connections:sum\n/ (proxytier:haproxy_max_connections_n_minus_1:sum > 0)"),
    ))


def _vrrp(m: Callable[..., str], selector: str) -> Group:
    """VRRP and VIP alerts: split brain, no MASTER, VIPs without a holder or held twice, FAULT, flapping."""
    return Group("proxytier-vrrp", (*_vrrp_ownership(m), *_vrrp_health(m)))


def _vrrp_ownership(m: Callable[..., str]) -> tuple[Alert, ...]:
    return (
        Alert("ProxytierVRRPSplitBrain", "proxytier:vrrp_masters:sum > 1", "critical",
              "More than one node is VRRP MASTER of the same VRRP instance.",
              "{{ $value }} nodes of {{ $labels.job }} are MASTER of VRRP instance {{ $labels.vrrp_instance }} "
              "(VRID {{ $labels.vrid }}): they do not hear each other's adverts and all claim its VIP.",
              "more than one MASTER for a VRRP instance", for_="30s"),
        Alert("ProxytierVIPOnSeveralNodes", "proxytier:vip_holders:sum > 1", "critical",
              "A VIP is configured on more than one node.",
              "{{ $value }} nodes of {{ $labels.job }} hold VIP {{ $labels.vip }} on an interface: clients reach "
              "whichever answered ARP last.",
              "a VIP on more than one node's interfaces", for_="30s"),
        Alert("ProxytierVRRPNoMaster",
              "proxytier:vrrp_masters:sum == 0\nunless on (job, vrrp_instance, vrid)\n"
              f"sum by (job, vrrp_instance, vrid) ({m(STATE, UNKNOWN)}) > 0", "critical",
              "No node is VRRP MASTER of a VRRP instance.",
              "No reporting node of {{ $labels.job }} is MASTER of VRRP instance {{ $labels.vrrp_instance }} "
              "(VRID {{ $labels.vrid }}): nobody answers for its VIP.",
              "no reporting node is MASTER of an instance", for_="30s",
              comment="Not while a node reports UNKNOWN (the exporter has seen no keepalived event for the instance "
                      "yet):\nthat node may well be the MASTER. ProxytierVIPNotHeld still sees a real outage from "
                      "the kernel side."),
    )


def _vrrp_health(m: Callable[..., str]) -> tuple[Alert, ...]:
    return (
        Alert("ProxytierVIPNotHeld", "proxytier:vip_holders:sum == 0", "critical",
              "No node holds a VIP.",
              "No reporting node of {{ $labels.job }} has VIP {{ $labels.vip }} on an interface: clients that DNS "
              "sends to it get no answer.",
              "no reporting node holds a VIP", for_="30s"),
        Alert("ProxytierMasterWithoutVIP",
              f"(\n  {m('proxytier_keepalived_vrrp_vip_info')}\n"
              f"  unless on (job, instance, vip) ({m('proxytier_vip_owned')} == 1)\n)\n"
              f"* on (job, instance, vrrp_instance) group_left()\n({m(STATE, MASTER)} == 1)", "critical",
              "A node is VRRP MASTER of an instance but does not hold its VIP.",
              "{{ $labels.instance }} ({{ $labels.job }}) is MASTER of VRRP instance {{ $labels.vrrp_instance }} "
              "but {{ $labels.vip }} is not on its interfaces: keepalived believes it serves a VIP the kernel "
              "does not have.",
              "a node is MASTER of an instance but does not hold its VIP (named)", for_="1m"),
        Alert("ProxytierVIPWithoutMaster",
              "instance:proxytier_vips_owned:sum\n> on (job, instance) (\n  instance:proxytier_vrrp_masters:sum\n"
              "  or on (job, instance) (0 * instance:proxytier_vips_owned:sum)\n)", "warning",
              "A node holds more VIPs than it is VRRP MASTER of.",
              "{{ $labels.instance }} ({{ $labels.job }}) holds {{ $value }} VIP(s) on its interfaces, more than "
              "the VRRP instances it is MASTER of: a VIP left behind (e.g. keepalived killed), likely duplicated.",
              "a node holds more VIPs than it is MASTER of (e.g. keepalived killed)", for_="1m",
              comment="A node whose keepalived collector fails (keepalived stopped or killed) counts as MASTER of "
                      "nothing:\na SIGKILLed keepalived leaves its VIPs on the interface."),
        Alert("ProxytierVRRPFault", f"{m(STATE, FAULT)} == 1", "warning",
              "A VRRP instance is in FAULT state.",
              "VRRP instance {{ $labels.vrrp_instance }} (VRID {{ $labels.vrid }}) on {{ $labels.instance }} "
              "({{ $labels.job }}) is in FAULT: its HAProxy check fails or interface {{ $labels.interface }} is "
              "down, so the node gives up its VIPs and the tier runs with one node less.",
              "an instance in FAULT", for_="1m"),
        Alert("ProxytierVRRPFlapping",
              "sum by (job, instance, vrrp_instance, vrid) (\n"
              f"  increase({m('proxytier_keepalived_vrrp_become_master_total')}[15m])\n"
              f"  + increase({m('proxytier_keepalived_vrrp_release_master_total')}[15m])\n) > 4", "warning",
              "A VRRP instance keeps changing MASTER.",
              "VRRP instance {{ $labels.vrrp_instance }} (VRID {{ $labels.vrid }}) on {{ $labels.instance }} "
              '({{ $labels.job }}) became or stopped being MASTER {{ $value | printf "%.0f" }} times in 15 minutes.',
              "more than 4 MASTER transitions of an instance on a node in 15 min"),
        Alert("ProxytierVRRPFailover",
              "sum by (job, instance, vrrp_instance, vrid) (\n"
              f"  increase({m('proxytier_keepalived_vrrp_become_master_total')}[5m])\n) > 0", "info",
              "A node became VRRP MASTER (a VIP moved).",
              "{{ $labels.instance }} ({{ $labels.job }}) became MASTER of VRRP instance {{ $labels.vrrp_instance }} "
              "(VRID {{ $labels.vrid }}) in the last 5 minutes.",
              "a node became MASTER in the last 5 min (a VIP moved)"),
        Alert("ProxytierMasterCannotServe",
              "(instance:proxytier_vrrp_masters:sum > 0)\nand on (job, instance) (\n"
              f"  {m('proxytier_collector_success', HAPROXY_COLLECTOR)} == 0\n  or on (job, instance)\n"
              "  min by (job, instance) (\n"
              f"    {m('haproxy_backend_active_servers')} + {m('haproxy_backend_backup_servers')}\n  ) == 0\n)",
              "critical",
              "A VRRP MASTER cannot serve its VIP's traffic.",
              "{{ $labels.instance }} ({{ $labels.job }}) is MASTER of {{ $value }} VRRP instance(s) but its "
              "HAProxy does not answer the exporter or has a backend without any server UP: traffic to its VIPs "
              "fails.",
              "a MASTER whose HAProxy does not answer or has a backend without servers", for_="30s"),
    )


def _bgp(m: Callable[..., str], selector: str) -> Group:
    """vip_mode bgp (the exporter's bgp collector): a serving node that does not announce, an announcing node
    that does not serve, BGP and BFD sessions down. In VRRP mode the proxytier_bgp_* metrics do not exist, so
    none of these can fire; a node held for maintenance (the gate's hold file) is left out of each."""
    held = f"{m('proxytier_bgp_gate_held')} == 1"
    return Group("proxytier-bgp", (
        Alert("ProxytierBGPNotAnnouncing",
              f"(\n  {m('proxytier_bgp_gate_announced')} == 0\n  unless on (job, instance) {held}\n)\n"
              f"and on (job, instance) ({m('proxytier_collector_success', HAPROXY_COLLECTOR)} == 1)\n"
              f"unless on (job, instance) ({m('haproxy_frontend_status', DOWN)} == 1)", "warning",
              "A node serves but does not announce the service addresses over BGP.",
              "{{ $labels.instance }} ({{ $labels.job }}) serves (its HAProxy answers, no frontend is down) and is "
              "not held, but its BGP gate does not announce the service addresses: the routers send it nothing "
              "and the tier runs with one node less.",
              "a serving node, not held, whose BGP gate does not announce", for_="1m",
              comment="vip_mode bgp. The gate announces rise x interval (0.6 s) after HAProxy answers; a node in "
                      "pillar maintenance\n(bgp:maintenance) still announces to BIRD, whose export filter "
                      "rejects: it does not fire for it."),
        Alert("ProxytierBGPAnnouncingWithoutServing",
              f"sum by (job, instance) ({m('proxytier_bgp_routes_exported')}) > 0\n"
              f"and on (job, instance) (\n  {m('proxytier_collector_success', HAPROXY_COLLECTOR)} == 0\n"
              f"  or on (job, instance) {m('proxytier_bgp_gate_healthy')} == 0\n)", "critical",
              "A node announces the service addresses over BGP but its HAProxy does not serve.",
              "{{ $labels.instance }} ({{ $labels.job }}) exports {{ $value }} route(s) to its BGP peers while its "
              "HAProxy does not answer (the exporter or the gate's check): the routers send it traffic that "
              "fails. The gate withdraws within a second of HAProxy's death, so the gate itself is broken.",
              "a node exports routes to its BGP peers while its HAProxy does not answer", for_="30s",
              comment="vip_mode bgp. Should never fire: the gate withdraws interval x fall (0.4 s) after HAProxy's "
                      "last answer.\nA held node exports nothing."),
        Alert("ProxytierBGPSessionDown",
              f"{m('proxytier_bgp_session_state', ESTABLISHED)} == 0\n"
              f"unless on (job, instance) {held}", "warning",
              "A BGP session of a node is not established.",
              "BGP session {{ $labels.peer }} of {{ $labels.instance }} ({{ $labels.job }}) to "
              "{{ $labels.peer_address }} (AS{{ $labels.peer_asn }}) is not established: that router sends the "
              "node nothing.",
              "a BGP session of a node that is not held is not Established", for_="1m"),
        Alert("ProxytierBFDSessionDown",
              f"{m('proxytier_bgp_bfd_session_state', UP)} == 0\n"
              f"and on (job, instance, peer) ({m('proxytier_bgp_session_state', ESTABLISHED)} == 1)\n"
              f"unless on (job, instance) {held}", "warning",
              "A BGP session runs without its BFD session.",
              "The BFD session of BGP session {{ $labels.peer }} of {{ $labels.instance }} ({{ $labels.job }}) to "
              "{{ $labels.peer_address }} on {{ $labels.interface }} is not up while BGP is established: a failure "
              "is seen after the BGP hold time instead of BFD's fraction of a second.",
              "a BFD session is not Up while its BGP session is Established", for_="1m",
              comment="A BFD session down with its BGP session is ProxytierBGPSessionDown's."),
    ))


def _haproxy(m: Callable[..., str], selector: str) -> Group:
    """HAProxy alerts: backends without servers, servers DOWN, nodes that disagree."""
    return Group("proxytier-haproxy", (
        Alert("ProxytierBackendNoServers",
              f"{m('haproxy_backend_active_servers')}\n+ {m('haproxy_backend_backup_servers')} == 0", "critical",
              "An HAProxy backend has no server UP.",
              "Backend {{ $labels.proxy }} of HAProxy on {{ $labels.instance }} ({{ $labels.job }}) has no active "
              "or backup server UP: its requests fail with 503.",
              "an HAProxy backend with no active or backup server UP", for_="30s"),
        Alert("ProxytierBackendDegraded",
              f"sum by (job, instance, proxy) ({m('haproxy_server_status', DOWN)}) > 0", "warning",
              "An HAProxy backend has servers DOWN.",
              "Backend {{ $labels.proxy }} of HAProxy on {{ $labels.instance }} ({{ $labels.job }}) has "
              "{{ $value }} server(s) DOWN (failing health checks); the others carry their share.",
              "an HAProxy backend with servers DOWN (MAINT/DRAIN excluded)", for_="1m"),
        Alert("ProxytierServerHealthDisagreement",
              "count by (job, proxy, server) (\n"
              f"  count by (job, proxy, server, state) ({m('haproxy_server_status')} == 1)\n) > 1", "warning",
              "Nodes disagree about the health of a server.",
              "The HAProxies of {{ $labels.job }} report {{ $value }} different states for server "
              "{{ $labels.server }} of backend {{ $labels.proxy }}: some nodes cannot reach it, or a runtime "
              "change (drain, maintenance) was made on some nodes only.",
              "the nodes' HAProxies report different states for a server", for_="2m",
              comment="Number of distinct states the nodes' HAProxies report for one server."),
    ))


def _nginx(m: Callable[..., str], selector: str) -> Group:
    """nginx alerts: upstream retries and 5xx, dropped connections."""
    return Group("proxytier-nginx", (
        Alert("ProxytierUpstreamDegraded",
              f"sum by (job, upstream) (increase({m('proxytier_nginx_upstream_retries_total')}[10m])) > 10",
              "warning",
              "nginx keeps retrying requests to another backend of an upstream.",
              'nginx of {{ $labels.job }} retried {{ $value | printf "%.0f" }} requests to upstream '
              "{{ $labels.upstream }} on another backend in 10 minutes: one of its backends fails.",
              "nginx retried more than 10 requests of an upstream on another backend in 10 min", for_="1m"),
        Alert("ProxytierUpstreamErrors",
              f"sum by (job, upstream) (rate({m(UPSTREAM_REQUESTS, STATUS_5XX)}[5m]))\n"
              f"/ sum by (job, upstream) (rate({m(UPSTREAM_REQUESTS)}[5m]))\n> 0.05", "warning",
              "More than 5% of the requests to an upstream end in 5xx.",
              "{{ $value | humanizePercentage }} of the requests nginx of {{ $labels.job }} proxied to upstream "
              "{{ $labels.upstream }} were answered with 5xx over 5 minutes.",
              "more than 5% of an upstream's requests end in 5xx", for_="5m"),
        Alert("ProxytierNginxDroppingConnections",
              f"sum by (job, instance) (\n  rate({m('nginx_connections_accepted')}[5m])\n"
              f"  - rate({m('nginx_connections_handled')}[5m])\n) > 0", "warning",
              "nginx accepts connections it does not handle.",
              "nginx on {{ $labels.instance }} ({{ $labels.job }}) drops {{ $value | humanize }} connections per "
              "second (accepted but not handled): worker_connections or file descriptor limit reached.",
              "nginx accepts connections it does not handle", for_="5m"),
    ))


def _capacity(m: Callable[..., str], selector: str) -> Group:
    """Capacity: connections above what the tier holds without its largest node."""
    return Group("proxytier-capacity", (
        Alert("ProxytierNMinusOneCapacityExceeded", "proxytier:haproxy_connections_n_minus_1:ratio > 1", "warning",
              "The tier would not hold its current connections if it lost its largest node.",
              "{{ $labels.job }} holds {{ $value | humanizePercentage }} of the connections its nodes could hold "
              "without the largest one (HAProxy maxconn): losing a node would queue or refuse clients.",
              "connections above what the tier holds without its largest node (HAProxy maxconn)", for_="15m"),
    ))


def _exporter(m: Callable[..., str], selector: str) -> Group:
    """The exporter and its targets: down, missing, a collector failing."""
    job_match = re.fullmatch(r'job=~"(.*)"', selector)
    selected_by = f"a job matching {job_match.group(1)}" if job_match else f"matching {selector}"
    return Group("proxytier-exporter", (
        Alert("ProxytierExporterDown", f"{m('up')} == 0", "warning",
              "Prometheus cannot scrape a proxytier node.",
              "The exporter of {{ $labels.instance }} ({{ $labels.job }}) has not answered for 1 minute: the node "
              "or its exporter is down, and the tier's counts (MASTERs, VIP holders) leave it out.",
              "a node's exporter cannot be scraped", for_="1m"),
        Alert("ProxytierNoTargets", f"absent({m('up')})", "warning",
              "Prometheus has no proxytier target.",
              "This Prometheus{{ with $externalURL }} ({{ . }}){{ end }} has no scrape target with "
              f"{selected_by}: the file_sd target file is missing or empty, so every other proxytier alert "
              "is blind.",
              f"no target selected by `{selector}`", for_="5m"),
        Alert("ProxytierCollectorFailing", f"{m('proxytier_collector_success')} == 0", "warning",
              "An exporter collector cannot read its daemon.",
              "Collector {{ $labels.collector }} of the exporter on {{ $labels.instance }} ({{ $labels.job }}) "
              "fails: its daemon is stopped or its interface is unreadable (the exporter's log says why).",
              "an exporter collector cannot read its daemon", for_="2m"),
    ))


def alerts(selector: str = DEFAULT_SELECTOR) -> list[Alert]:
    """Every alert rule, in file order."""
    return [rule for group in groups(selector) for rule in group.rules if isinstance(rule, Alert)]


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def yaml_squote(text: str) -> str:
    """`text` as a single-quoted YAML scalar on one line: what Salt's `yaml_squote` Jinja filter writes (the
    formula's template of the rules fills runbook_url in with it, so both give the same bytes)."""
    with io.StringIO() as stream:
        emitter = yaml.emitter.Emitter(stream, width=sys.maxsize)
        emitter.write_single_quoted(text)
        return stream.getvalue()


def check_runbook_url(runbook_url: str) -> str:
    """`runbook_url` if it can be a base URL (an anchor is appended), else ValueError saying why. Spaces are
    allowed inside Go template actions only (`{{ $externalURL }}`)."""
    outside_actions = re.sub(r"\{\{[^{}'\"#\n]*\}\}", "", runbook_url)
    if not runbook_url.strip() or re.search(r"[\s'\"#{}]", outside_actions):
        raise ValueError(f"runbook URL {runbook_url!r}: a URL without spaces, quotes or '#' (the alert's anchor is "
                         "appended), e.g. '{{ $externalURL }}/consoles/proxytier-runbook.html' or "
                         "'https://wiki.example.com/proxytier/RUNBOOK.html'")
    return runbook_url


def rule_data(rule: Record | Alert, runbook_url: str = DEFAULT_RUNBOOK_URL) -> dict[str, Any]:
    """One rule as Prometheus reads it (the YAML mapping)."""
    if isinstance(rule, Record):
        return {"record": rule.record, "expr": rule.expr}
    data: dict[str, Any] = {"alert": rule.alert, "expr": rule.expr}
    if rule.for_:
        data["for"] = rule.for_
    data["labels"] = {"severity": rule.severity}
    data["annotations"] = {"summary": rule.summary, "description": rule.description,
                           "runbook_url": f"{runbook_url}#{rule.anchor}"}
    return data


def data(selector: str = DEFAULT_SELECTOR, runbook_url: str = DEFAULT_RUNBOOK_URL) -> dict[str, Any]:
    """The whole rule file as Prometheus reads it."""
    check_runbook_url(runbook_url)
    return {"groups": [{"name": g.name, "rules": [rule_data(r, runbook_url) for r in g.rules]}
                       for g in groups(selector)]}


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


# Each runbook_url is written as this placeholder, then replaced by its single-quoted value (`render`) or by the
# Jinja expression that writes it (`formula_template`): both paths give the same text.
_PLACEHOLDER = "PROXYTIER_RUNBOOK_URL_"
_PLACEHOLDER_LINE = re.compile(rf"(?m)^(\s+runbook_url: ){_PLACEHOLDER}([a-z0-9]+)$")
_DESCRIPTION = "PROXYTIER_DESCRIPTION"
_WIDTH = 118


def _folded(value: str, indent: int) -> str:
    """`value` (one line) as a YAML folded scalar (`>-`) whose lines break at single spaces outside Go template
    actions and stay within _WIDTH where possible; checked to read back as `value`."""
    words = re.findall(r"(?:\{\{.*?\}\}|\S)+", value)  # a Go template action is never split
    lines = [words[0]]
    for word in words[1:]:
        if indent + len(lines[-1]) + 1 + len(word) > _WIDTH:
            lines.append(word)
        else:
            lines[-1] += " " + word
    text = ">-\n" + "".join(" " * indent + item + "\n" for item in lines)
    if yaml.safe_load("k: " + text)["k"] != value:
        raise AssertionError(f"folding changes {value!r}")
    return text


def _text(selector: str) -> str:
    lines = [
        "# proxytier: Prometheus recording and alerting rules. GENERATED by `python -m proxytier_dashboards",
        "# generate` (run from dashboards/) from dashboards/proxytier_dashboards/rules.py: edit that, not this file.",
        "#",
        f"# Every rule selects the tier's scrape jobs with {selector} (one job per tier; the",
        "# proxytier.monitoring state names it) and aggregates per job, so several tiers can share one Prometheus.",
        "# Node = Prometheus' `instance` label (one exporter per node).",
        "# Runbook: dashboards/RUNBOOK.md, one section per alert; each runbook_url is the runbook's base URL (a",
        "# generator parameter; Salt pillar proxytier_monitoring:runbook_url) followed by #<alert name in lower case>.",
        "# Tests: dashboards/rules/tests/*.test.yml (promtool test rules).",
        "groups:",
    ]
    text = "\n".join(lines) + "\n"
    for number, group in enumerate(groups(selector)):
        if number:
            text += "\n"
        text += f"  - name: {group.name}\n    rules:\n"
        for rule in group.rules:
            if isinstance(rule, Alert) and rule is not group.rules[0]:
                text += "\n"
            if rule.comment:
                text += "".join(f"      # {line}\n" for line in rule.comment.splitlines())
            data = rule_data(rule)
            if isinstance(rule, Alert):
                data["annotations"]["runbook_url"] = _PLACEHOLDER + rule.anchor
                data["annotations"]["description"] = _DESCRIPTION
            dumped = _indent(yaml.dump([data], Dumper=_Dumper, sort_keys=False, width=sys.maxsize,
                                        allow_unicode=True, default_flow_style=False), 6)
            if isinstance(rule, Alert):
                dumped = dumped.replace(f"description: {_DESCRIPTION}\n", "description: " + _folded(
                    rule.description, 12), 1)
            text += dumped
    if len(_PLACEHOLDER_LINE.findall(text)) != len(alerts(selector)) or text.count(_PLACEHOLDER) != len(
            alerts(selector)):
        raise AssertionError("every alert's runbook_url is one placeholder line")
    return text


def render(selector: str = DEFAULT_SELECTOR, runbook_url: str = DEFAULT_RUNBOOK_URL) -> str:
    """The rule file's text: `data()` with each rule's comment above it and a header saying where it comes from."""
    check_runbook_url(runbook_url)
    return _PLACEHOLDER_LINE.sub(lambda match: match.group(1) + yaml_squote(f"{runbook_url}#{match.group(2)}"),
                                 _text(selector))


def formula_template(selector: str = DEFAULT_SELECTOR) -> str:
    """The rules as the formula's Jinja template (salt/proxytier/templates/monitoring/proxytier.rules.yml.jinja):
    the text of `render()` kept raw (its Go templates are not Jinja's), each runbook_url written by
    `{{ (runbook_url ~ "#anchor") | yaml_squote }}`. Rendered by Salt with the default runbook_url it is byte
    for byte dashboards/rules/proxytier.rules.yml."""
    body = _PLACEHOLDER_LINE.sub(
        lambda match: (f'{match.group(1)}{{% endraw %}}{{{{ (runbook_url ~ "#{match.group(2)}") | yaml_squote }}}}'
                       "{% raw %}"),
        _text(selector))
    header = ("{#- GENERATED by `python -m proxytier_dashboards generate` from dashboards/proxytier_dashboards/"
              "rules.py:\n    do not edit. proxytier.monitoring renders it with `runbook_url`. -#}\n")
    # Jinja drops the template's final newline and Salt puts it back: the output ends with exactly one
    return header + "{% raw %}" + body.rstrip("\n") + "{% endraw %}\n"
