"""Every pillar value that reaches a config file or a command is validated to what its daemon
reads: a value the daemon would read differently from how it is written (cut at a comment
character, split at a space, a second line) is refused with a message naming the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from formula import ProxytierError, build_model, os_params


def pillar(**extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "interface": "eth0",
        "members": [{"id": f"proxy{i}", "address": f"198.18.0.{10 + i}"} for i in (1, 2, 3)],
        "vips": [{"address": f"198.18.0.{100 + i}/24", "vrid": 50 + i} for i in (1, 2, 3)],
        "sites": [{"name": "app", "backends": [{"address": "198.18.0.21:8080"}, "198.18.0.22:8080"]}],
    }
    p.update(extra)
    return p


def set_path(p: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    p = copy.deepcopy(p)
    node: Any = p
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node, dict) else node[k]
    node[path[-1]] = value
    return p


def refused(p: dict[str, Any], *fragments: str, node: str = "proxy1", **kw: Any) -> str:
    with pytest.raises(ProxytierError) as exc:
        build_model(p, node, **kw)
    msg = str(exc.value)
    for frag in fragments:
        assert frag in msg, msg
    return msg


# --- keepalived auth_pass (VRRPv2) ----------------------------------------------------------

V2 = {"version": 2, "advert_interval": 1}


@pytest.mark.parametrize("secret", ["pa#ss", "pa ss", "!secret", "ab!cd", 'a"b', "pa}s", "p{x}", "p$X", "pässwd",
                                    "tab\tx", "nl\nx", "123456789", "", "p;s", "p'q", "p\\x"])
def test_auth_pass_keepalived_would_read_differently_is_refused(secret: str) -> None:
    msg = refused(pillar(vrrp={**V2, "auth_pass": secret}), "proxytier:vrrp:auth_pass")
    if len(secret) > 2:
        assert secret not in msg, "the secret must not appear in the message"


@pytest.mark.parametrize("secret", ["secret", "12345678", "p@x,y=z", "a-b_c.d", "P~(x)*+"])
def test_auth_pass_read_as_written_is_accepted(secret: str) -> None:
    m = build_model(pillar(vrrp={**V2, "auth_pass": secret}), "proxy1")
    assert m["vrrp"]["auth_pass"] == secret


# --- TLS keys -------------------------------------------------------------------------------

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
ENCRYPTED = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n-----END ENCRYPTED PRIVATE KEY-----\n"
)
LEGACY_ENCRYPTED = (
    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
    "DEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END RSA PRIVATE KEY-----\n"
)


@pytest.mark.parametrize("key", [ENCRYPTED, LEGACY_ENCRYPTED])
def test_encrypted_tls_key_is_refused_with_how_to_decrypt(key: str) -> None:
    p = set_path(pillar(), ("sites", 0, "tls"), {"certificate": CERT, "key": key})
    msg = refused(p, "proxytier:sites:0:tls:key", "unencrypted", "openssl pkey -in")
    assert "MIIF" not in msg and "MIIE" not in msg


@pytest.mark.parametrize(("field", "value"), [
    ("certificate", CERT.replace("MIIB", "MI IB")),                          # not base64
    ("certificate", CERT + "-----BEGIN CERTIFICATE-----\nMIIB\n"),            # unterminated block
    ("certificate", KEY),                                                    # no certificate at all
    ("key", KEY + KEY),                                                      # two keys
    ("key", CERT),                                                           # no key
    ("key", KEY.replace("-----END PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----")),  # mismatched END
])
def test_malformed_pem_is_refused(field: str, value: str) -> None:
    tls = {"certificate": CERT, "key": KEY, field: value}
    refused(set_path(pillar(), ("sites", 0, "tls"), tls), f"proxytier:sites:0:tls:{field}")


def test_text_outside_pem_blocks_is_left_out_of_the_file() -> None:
    # `openssl pkcs12 -nokeys` writes "Bag Attributes" before each block; OpenSSL skips it: so does the file
    cert = "Bag Attributes\n    localKeyID: 01 02\nsubject=/CN=app\n" + CERT + "trailing words {\n"
    key = "Bag Attributes\n    friendlyName: app\n" + KEY
    m = build_model(set_path(pillar(), ("sites", 0, "tls"), {"certificate": cert, "key": key}), "proxy1",
                    with_secrets=True)
    assert m["tls_files"][0]["contents"] == CERT + KEY


@pytest.mark.parametrize("value", ["/etc/ssl/my app.pem", "/etc/ssl/app.pem\nbind :1", "etc/app.pem",
                                   "/etc/ssl/../app.pem", "/etc/ssl/app#.pem"])
def test_tls_file_paths_are_safe_absolute_paths(value: str) -> None:
    p = set_path(pillar(), ("sites", 0, "tls"), {"certificate_file": value, "key_file": value})
    refused(p, "proxytier:sites:0:tls:certificate_file", file_exists=lambda _: True)


# --- HAProxy health check path --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/health check", "/healthz\n    bind 0.0.0.0:2222", "/a#b", "/a'b", '/a"b', "/a\\b",
                                  "/a;b", "/ä", "/a%zz", "/a{b}", "/a\tb", "healthz", "/a b?x=1"])
def test_health_check_path_is_an_http_request_target(path: str) -> None:
    refused(set_path(pillar(), ("sites", 0, "health_check", "path"), path), "proxytier:sites:0:health_check:path")


@pytest.mark.parametrize("path", ["/healthz", "/a/b-c_d.e~f", "/status?full=1&x=%20", "/a:b@c!$(x)*+,="])
def test_health_check_path_accepted(path: str) -> None:
    m = build_model(set_path(pillar(), ("sites", 0, "health_check", "path"), path), "proxy1")
    assert m["haproxy"]["backends"][0]["check_path"] == path


# --- trailing newlines, scoped IPv6 addresses, member ids, interfaces -----------------------

@pytest.mark.parametrize(("path", "value"), [
    (("sites", 0, "name"), "app\n"),
    (("nginx", "health_path"), "/proxytier-health\n"),
    (("interface",), "eth0\n"),
    (("vips", 1, "interface"), "eth1\n"),
    (("vips", 1, "interface"), "eth0:1"),   # an alias label, not a device: the kernel refuses ':'
    (("vips", 1, "interface"), "host0@if5"),  # `ip link` shows veth peers as NAME@ifN
    (("vips", 1, "interface"), ".."),
    (("haproxy", "timeouts", "connect"), "500ms\n"),
    (("haproxy", "timeouts", "connect"), "\u0665s"),  # an Arabic-Indic five: \d matches it, HAProxy does not
    (("members", 1, "address"), "2001:2::12%eth0\n    server evil 203.0.113.9:80"),
    (("members", 1, "address"), "fe80::12%eth0"),
    (("members", 1, "address6"), "2001:2::12%eth0\n    server evil 198.18.0.99:80"),
    (("members", 1, "address6"), "fe80::12%eth0"),
    (("vips", 0, "address"), "2001:2::101%x}/64"),
])
def test_no_value_smuggles_a_newline_or_scope(path: tuple[Any, ...], value: Any) -> None:
    refused(set_path(pillar(), path, value), "proxytier:" + ":".join(map(str, path)))


def test_addresses_render_canonically() -> None:
    # whitespace around an address is not part of it: the model renders the address itself
    m = build_model(set_path(pillar(), ("members", 1, "address"), " 198.18.0.12\n"), "proxy1")
    assert m["peers"] == ["198.18.0.12", "198.18.0.13"]


@pytest.mark.parametrize("member_id", ["proxy 2", "proxy2\n    server evil 203.0.113.9:80", "proxy/2", "proxy#2",
                                       "proxy2;", "", "-proxy2", "pröxy2", "x" * 64, 2])
def test_member_ids_are_safe_names(member_id: Any) -> None:
    refused(set_path(pillar(), ("members", 1, "id"), member_id), "proxytier:members:1:id")


# --- durations: each daemon's own grammar ----------------------------------------------------

@pytest.mark.parametrize(("path", "value"), [
    (("sites", 0, "timeouts", "read"), "30us"),                  # nginx has no microseconds
    (("sites", 0, "backends", 0, "fail_timeout"), "500ms"),      # nginx reads fail_timeout in seconds
    (("haproxy", "timeouts", "client"), "25d"),                  # HAProxy: timer overflow beyond 24.8 days
    (("haproxy", "timeouts", "client"), "2147483648"),
    (("haproxy", "check", "inter"), "0"),                        # HAProxy: invalid value 0 for 'inter'
    (("haproxy", "timeouts", "client"), "1h30m"),
])
def test_durations_follow_their_daemon(path: tuple[Any, ...], value: str) -> None:
    refused(set_path(pillar(), path, value), "proxytier:" + ":".join(map(str, path)))


# --- backend host names ----------------------------------------------------------------------

@pytest.mark.parametrize("address", ["app-.example:80", "-app.example:80", "a..b:80", "198.18.0.300:80",
                                     "198.018.0.21:80", "x" * 64 + ".example:80", "app_1.example:80",
                                     "198.18.0.21:\u0668\u0660"])
def test_backend_hosts_are_dns_names_or_addresses(address: str) -> None:
    refused(set_path(pillar(), ("sites", 0, "backends", 0), address), "proxytier:sites:0:backends:0:address")


def test_backend_dns_name_accepted() -> None:
    m = build_model(set_path(pillar(), ("sites", 0, "backends", 0), "app-1.example.org:8080"), "proxy1")
    assert m["nginx"]["sites"][0]["servers"][0]["address"] == "app-1.example.org:8080"


# --- exporter extra_args: one systemd ExecStart word each -----------------------------------

@pytest.mark.parametrize("arg", ["--log.level=debug ; rm -rf /", "--log.level=debug\nExecStartPre=/bin/sh",
                                 "--vip=%n", "--vip=$HOME", "--x='a b'", ";", "rm", "--x=a\\b", "--vip=${X}"])
def test_exporter_extra_args_are_single_plain_words(arg: str) -> None:
    refused(pillar(exporter={"extra_args": [arg]}), "proxytier:exporter:extra_args:0")


def test_exporter_extra_args_accepted() -> None:
    m = build_model(pillar(exporter={"extra_args": ["--log.level=debug", "--nginx.timeout=2"]}), "proxy1")
    assert m["exporter"]["args"][-2:] == ["--log.level=debug", "--nginx.timeout=2"]


# --- lookup (OS parameters): paths and names that reach files, units and commands -----------

@pytest.mark.parametrize(("param", "value"), [
    ("libexec_dir", "/usr/local/libexec/proxy tier"),
    ("libexec_dir", "/usr/local/libexec\n"),
    ("tls_dir", "relative/dir"),
    ("haproxy_state_file", "/var/lib/haproxy/state;rm"),
    ("exporter_run_dir", "/run/x,y"),
    ("exporter_log_dir", "/var/log/x y"),
    ("exporter_log_dir", "/var/log/$host"),         # a variable: nginx would open a file per request
    ("exporter_state_dir", "/var/lib/a;b"),
    ("logrotate_dir", "/etc/logrotate.d/{x}"),
    ("exporter_run_dir", "/run/%n"),                # systemd specifier
    ("vrrp_hold_file", '/run/a"b'),
    ("haproxy_user", "hap roxy"),
    ("exporter_user", "Exporter"),
    ("nginx_user", "www-data$"),
    ("exporter_service", "proxytier exporter"),
    ("python3", "python3"),
])
def test_lookup_paths_and_names_are_refused_naming_the_key(param: str, value: str) -> None:
    refused(pillar(), f"proxytier:lookup:{param}", params=os_params(**{param: value}))


@pytest.mark.parametrize(("param", "value", "fix"), [
    ("exporter_log_dir", "/var/log/nginx", "a directory of its own, not nginx_log_dir"),
    ("exporter_state_dir", "/srv/exporter", "a directory under /var/lib"),
    ("exporter_state_dir", "/var/lib", "a directory under /var/lib"),
])
def test_exporter_directories_the_daemons_cannot_share_are_refused(param: str, value: str, fix: str) -> None:
    refused(pillar(), f"proxytier:lookup:{param} = '{value}': {fix}", params=os_params(**{param: value}))


def test_the_exporter_log_and_state_follow_their_directories() -> None:
    m = build_model(pillar(), "proxy1", params=os_params(exporter_log_dir="/srv/log/pt",
                                                         exporter_state_dir="/var/lib/pt/exporter"))
    assert m["exporter"]["access_log"] == "/srv/log/pt/nginx-access.log"
    assert m["exporter"]["state_directory"] == "pt/exporter"
    assert "--nginx.access-log-state-file=/var/lib/pt/exporter/nginx-access-log.json" in m["exporter"]["args"]


def test_lookup_nested_keys_are_checked() -> None:
    params = os_params()
    params["bin"]["haproxy"] = "/usr/sbin/haproxy -q"
    refused(pillar(), "proxytier:lookup:bin:haproxy", params=params)


def test_default_parameters_pass() -> None:
    m = build_model(pillar(), "proxy1", params=os_params())
    assert m["params"]["haproxy_user"] == "haproxy"
