"""Property: a pillar value stays inside its token. For any accepted pillar made by putting an
arbitrary string (unicode, newlines, braces, quotes, '#', ';', '$', '%', backslashes...) at any key
path outside the `extra` escape hatch, or into any OS parameter (proxytier:lookup), the rendered
nginx.conf, haproxy.cfg, keepalived.conf and the exporter's unit files compare line by line with
those rendered without it: the same lines, and each changed line has the same number of words and
of every character that ends, opens or comments out a token in one of these grammars."""

from __future__ import annotations

import copy
from typing import Any

from formula import ProxytierError, build_model, example_pillar, os_params, render
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEMPLATES = ("nginx.conf.jinja", "haproxy.cfg.jinja", "keepalived.conf.jinja", "exporter/exporter.service.jinja",
             "exporter/logrotate.jinja", "exporter/tmpfiles.conf.jinja")
#: characters that end, open, escape or comment out a token (or expand a variable) in each grammar:
#: all of them honour quotes, '\\' and '#'; nginx expands $variables; keepalived takes '!' as a comment
#: and $NAME as a parameter; systemd expands %specifiers and $VARS (HAProxy expands "${VAR}" only
#: inside double quotes, so '$', '!' and '%' are plain characters of an unquoted HAProxy word)
COMMON = "\n\r{};#\"'\\"
SPECIAL = {"nginx.conf.jinja": COMMON + "$", "haproxy.cfg.jinja": COMMON, "keepalived.conf.jinja": COMMON + "!$"}
UNIT_SPECIAL = COMMON + "$%"


def base_pillar() -> dict[str, Any]:
    """The example pillar with every optional value set, so that each key renders somewhere."""
    p = example_pillar()
    p["vrrp"] = {"version": 2, "advert_interval": 1, "auth_pass": "secret"}
    p["haproxy"] = {"maxconn": 1000}
    p["exporter"] = {"extra_args": ["--log.level=info"]}
    p["vips"][1]["interface"] = "eth1"
    p["vips"][2]["owner"] = "proxy3"
    site = p["sites"][0]
    site["health_check"] = {"path": "/healthz"}
    site["backends"][0] = {"address": "198.18.0.21:8080", "fail_timeout": "10s"}
    site["backends"].append("app.example.org:8080")
    site["tls"] = {"certificate_file": "/etc/ssl/app.pem", "key_file": "/etc/ssl/app.pem.key"}
    return p


BASE = base_pillar()
PARAMS = os_params()
#: choices and switches: a valid other value legitimately adds or removes lines (not free text)
STRUCTURAL = {"log_requests", "on_error", "track", "client_address", "keepalived_source", "unicast",
              "check_unicast_src", "enabled", "backup", "redirect_http", "version", "restart_on_failure"}


def leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in leaves(v, (*prefix, k))]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in leaves(v, (*prefix, i))]
    return [(prefix, node)]


PILLAR_PATHS = [(p, v) for p, v in leaves(BASE) if "extra" not in p and not set(p) & STRUCTURAL]
PARAM_PATHS = [(("lookup", *p), v) for p, v in leaves(PARAMS) if not set(p) & STRUCTURAL]
DANGER = ["\n", "\r", " ", "\t", "{", "}", ";", "#", '"', "'", "\\", "$", "%", "!", "`", "\x00", "\u2028", "\u0665",
          "é", ",", "${X}", "%n", "\n    server evil 203.0.113.9:80", "\n}\nvrrp_instance X {", "\nlisten x :22"]


@st.composite
def fuzzed(draw: st.DrawFn) -> tuple[tuple[Any, ...], Any]:
    path, base = draw(st.sampled_from(PILLAR_PATHS + PARAM_PATHS))
    text = str(base)
    pos = draw(st.integers(0, len(text)))
    value = draw(st.one_of(
        st.text(max_size=16),
        st.builds(lambda d: text[:pos] + d + text[pos:], st.sampled_from(DANGER)),
        st.builds(lambda d, t: text + d + t, st.sampled_from(DANGER), st.text(max_size=6)),
        st.builds(lambda d: d + text, st.sampled_from(DANGER)),
    ))
    return path, value


def put(tree: Any, path: tuple[Any, ...], value: Any) -> None:
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def render_all(pillar: dict[str, Any], params: dict[str, Any], node: str) -> dict[str, list[str]]:
    model = build_model(pillar, node, params=params, file_exists=lambda _: True)
    return {t: render(t, model).split("\n") for t in TEMPLATES}


BASELINE = {node: render_all(BASE, PARAMS, node) for node in ("proxy1", "proxy2")}


def shape(line: str, template: str) -> tuple[int, ...]:
    return (len(line.split()), *(line.count(c) for c in SPECIAL.get(template, UNIT_SPECIAL)))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fuzzed())
def test_an_accepted_value_stays_inside_its_token(case: tuple[tuple[Any, ...], Any]) -> None:
    path, value = case
    pillar, params = copy.deepcopy(BASE), copy.deepcopy(PARAMS)
    if path[0] == "lookup":
        put(params, path[1:], value)
    else:
        put(pillar, path, value)
    node = "proxy2" if path[:2] == ("members", 0) else "proxy1"
    try:
        got = render_all(pillar, params, node)
    except ProxytierError as exc:
        assert str(exc).startswith("proxytier:"), str(exc)
        return
    for template, lines in got.items():
        base = BASELINE[node][template]
        assert len(lines) == len(base), f"{path} = {value!r} changed the lines of {template}"
        for old, new in zip(base, lines, strict=True):
            if old != new:
                assert shape(new, template) == shape(old, template), (
                    f"{path} = {value!r} left its token in {template}:\n{old}\n{new}"
                )
