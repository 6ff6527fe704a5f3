"""What the exporter needs from keepalived.conf: per VRRP instance its VRID, interface, priority and VIPs.

The notify FIFO names instances only, so the labels `vrid` and `interface` and the base priority come
from the configuration; the VIP collector uses the VIPs when none are given on the command line.
Only the file itself is read (`include` is not followed: the formula renders one file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxytier_exporter.core import SourceError

_VIP_BLOCKS = ("virtual_ipaddress", "virtual_ipaddress_excluded")


@dataclass
class InstanceConfig:
    name: str
    vrid: str = ""
    interface: str = ""
    priority: int | None = None
    vips: list[str] = field(default_factory=list)


def _statement(words: list[str], stack: list[str], current: InstanceConfig | None) -> None:
    if current is None or not words:
        return
    if stack == ["vrrp_instance"] and len(words) >= 2:
        keyword, value = words[0], words[1]
        if keyword == "interface":
            current.interface = value
        elif keyword == "virtual_router_id":
            current.vrid = value
        elif keyword == "priority" and value.isdigit():
            current.priority = int(value)
    elif len(stack) == 2 and stack[0] == "vrrp_instance" and stack[1] in _VIP_BLOCKS:
        current.vips.append(words[0])


def parse_keepalived_conf(text: str) -> dict[str, InstanceConfig]:
    """VRRP instances by name, in file order. Never raises on odd input: unknown parts are skipped."""
    instances: dict[str, InstanceConfig] = {}
    stack: list[str] = []
    current: InstanceConfig | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split("!", 1)[0]
        words: list[str] = []
        for token in line.replace("{", " { ").replace("}", " } ").split():
            if token == "{":
                if not stack and words[:1] == ["vrrp_instance"] and len(words) >= 2:
                    current = instances.setdefault(words[1], InstanceConfig(words[1]))
                stack.append(words[0] if words else "")
                words = []
            elif token == "}":
                _statement(words, stack, current)
                words = []
                if stack:
                    stack.pop()
                if not stack:
                    current = None
            else:
                words.append(token)
        _statement(words, stack, current)
    return instances


def load_keepalived_conf(path: str) -> dict[str, InstanceConfig]:
    try:
        return parse_keepalived_conf(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError as error:
        raise SourceError(f"{path}: cannot read the keepalived configuration: {error.strerror}") from error
