"""What the exporter needs from keepalived.conf: per VRRP instance its VRID, interface, priority and VIPs.

The notify FIFO names instances only, so the labels `vrid` and `interface` and the base priority come
from the configuration; the VIP collector uses the VIPs when none are given on the command line.
Only the file itself is read (`include` is not followed: the formula renders one file).
"""

from __future__ import annotations

import os
import threading
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
    """VRRP instances of keepalived.conf text by name, in file order.

    Unknown keywords and blocks are skipped (`#` and `!` start comments, as keepalived reads them).
    Raises SourceError, saying what is wrong, when the text cannot be the whole of a configuration the
    exporter can label series from: a block is not closed at the end of the text (a file cut short) or a
    `}` closes nothing; there is no vrrp_instance; an instance has no `virtual_router_id` 1..255
    (keepalived itself refuses such an instance) or no `interface` (the `interface` label; the formula
    always renders one). A cut between two blocks leaves a well-formed shorter configuration: that
    cannot be told from a whole one here (the formula replaces the file by rename, never in place).
    """
    instances: dict[str, InstanceConfig] = {}
    stack: list[tuple[str, int]] = []
    current: InstanceConfig | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split("!", 1)[0]
        words: list[str] = []
        for token in line.replace("{", " { ").replace("}", " } ").split():
            if token == "{":
                if not stack and words[:1] == ["vrrp_instance"] and len(words) >= 2:
                    current = instances.setdefault(words[1], InstanceConfig(words[1]))
                stack.append((words[0] if words else "", number))
                words = []
            elif token == "}":
                _statement(words, [name for name, _ in stack], current)
                words = []
                if not stack:
                    raise SourceError(f"keepalived.conf line {number}: '}}' closes no block")
                stack.pop()
                if not stack:
                    current = None
            else:
                words.append(token)
        _statement(words, [name for name, _ in stack], current)
    if stack:
        name, number = stack[-1]
        raise SourceError(f"keepalived.conf: block {name or '{'} opened on line {number} is not closed "
                          "(file cut short?)")
    if not instances:
        raise SourceError("keepalived.conf: no vrrp_instance")
    for instance in instances.values():
        if not (instance.vrid.isdigit() and 1 <= int(instance.vrid) <= 255):
            raise SourceError(f"keepalived.conf: vrrp_instance {instance.name} has no virtual_router_id 1..255")
        if not instance.interface:
            raise SourceError(f"keepalived.conf: vrrp_instance {instance.name} has no interface")
    return instances


def load_keepalived_conf(path: str) -> dict[str, InstanceConfig]:
    """`parse_keepalived_conf` of the file at `path`. Raises SourceError naming the path."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise SourceError(f"{path}: cannot read the keepalived configuration: {error.strerror}") from error
    try:
        return parse_keepalived_conf(text)
    except SourceError as error:
        raise SourceError(f"{path}: {error}") from error


class KeepalivedConfig:
    """keepalived.conf at `path`, parsed again only when the file changes.

    The file is identified by (device, inode, size, mtime, ctime) from stat(2): Salt replaces it by
    rename (new inode), an editor in place changes mtime/size. Shared by the keepalived collector (labels,
    base priority, VIPs) and the notify FIFO reader (which instances exist now); thread-safe.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, ...] | None = None
        self._instances: dict[str, InstanceConfig] = {}

    def instances(self) -> dict[str, InstanceConfig]:
        """The instances of the file as it is now ({name: InstanceConfig}, file order; do not modify).
        Raises SourceError when the file cannot be read or is not a whole configuration."""
        try:
            info = os.stat(self.path)
        except OSError as error:
            raise SourceError(f"{self.path}: cannot read the keepalived configuration: {error.strerror}") from error
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        with self._lock:
            if key != self._key:
                self._instances = load_keepalived_conf(self.path)
                self._key = key
            return self._instances
