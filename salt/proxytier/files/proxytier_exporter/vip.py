"""VIP ownership, read from the kernel over rtnetlink (what `ip addr show` does), independently of keepalived.

One series per configured VIP: 1 if the address is on one of this node's interfaces, else 0. The VIPs
come from --vip, or from the virtual_ipaddress blocks of keepalived.conf when none is given.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from proxytier_exporter.core import SourceError, describe_names
from proxytier_exporter.keepalived_conf import load_keepalived_conf

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def vip_address(text: str) -> IPAddress | None:
    """The address of a VIP as written in config ("198.18.0.101/32", "198.18.0.101"), None if invalid."""
    try:
        return ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return None


# rtnetlink, as in linux/netlink.h, linux/rtnetlink.h and linux/if_addr.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
MAX_DUMP_BYTES = 16 * 1024 * 1024


def netlink_addr_dump(timeout: float = 2.0) -> bytes:
    """The kernel's answer to an RTM_GETADDR dump request (what `ip addr show` asks), all messages."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(timeout)
            sock.bind((0, 0))
            request = _NLMSGHDR.pack(_NLMSGHDR.size + _IFADDRMSG.size, RTM_GETADDR,
                                     NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + _IFADDRMSG.pack(0, 0, 0, 0, 0)
            sock.send(request)
            chunks: list[bytes] = []
            size = 0
            while size < MAX_DUMP_BYTES:
                chunk = sock.recv(65536)
                chunks.append(chunk)
                size += len(chunk)
                if _ends_dump(chunk):
                    return b"".join(chunks)
    except OSError as error:
        raise SourceError(f"netlink address dump failed: {error.strerror or error}") from error
    raise SourceError(f"netlink address dump larger than {MAX_DUMP_BYTES} bytes")


def _ends_dump(chunk: bytes) -> bool:
    offset = 0
    while offset + _NLMSGHDR.size <= len(chunk):
        length, kind = _NLMSGHDR.unpack_from(chunk, offset)[:2]
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if length < _NLMSGHDR.size:
            return True  # malformed: stop reading, the parser reports it
        offset += (length + 3) & ~3
    return False


def parse_addr_dump(data: bytes) -> set[IPAddress]:
    """Addresses held by this node's interfaces, from an RTM_GETADDR dump.

    Addresses still in IPv6 duplicate-address detection (tentative) or that failed it are not held.
    Raises SourceError if the data is not a complete dump.
    """
    held: set[IPAddress] = set()
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise SourceError(f"netlink: malformed message at byte {offset}")
        if kind == NLMSG_DONE:
            return held
        if kind == NLMSG_ERROR:
            raise SourceError("netlink: the kernel answered the address dump with an error")
        if kind == RTM_NEWADDR and length >= _NLMSGHDR.size + _IFADDRMSG.size:
            address = _address(data[offset + _NLMSGHDR.size: offset + length])
            if address is not None:
                held.add(address)
        offset += (length + 3) & ~3
    raise SourceError("netlink: the address dump ended without NLMSG_DONE")


def _address(message: bytes) -> IPAddress | None:
    family, _, flags, _, _ = _IFADDRMSG.unpack_from(message)
    attributes: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(message):
        length, kind = _RTATTR.unpack_from(message, offset)
        if length < _RTATTR.size or offset + length > len(message):
            break
        attributes[kind] = message[offset + _RTATTR.size: offset + length]
        offset += (length + 3) & ~3
    if len(attributes.get(IFA_FLAGS, b"")) == 4:
        flags = struct.unpack("=I", attributes[IFA_FLAGS])[0]
    if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
        return None
    raw = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
    if family == socket.AF_INET and raw is not None and len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if family == socket.AF_INET6 and raw is not None and len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    return None


class VipCollector:
    name = "vip"

    def __init__(
        self,
        vips: Sequence[str],
        keepalived_config: str | None = None,
        read_addresses: Callable[[], bytes] = netlink_addr_dump,
    ):
        self.vips = list(vips)
        self.keepalived_config = keepalived_config
        self.read_addresses = read_addresses

    def configured(self) -> list[str]:
        if self.vips or not self.keepalived_config:
            return self.vips
        config = load_keepalived_conf(self.keepalived_config)
        return [vip for instance in config.values() for vip in instance.vips]

    def collect(self) -> Iterator[Metric]:
        held = parse_addr_dump(self.read_addresses())
        family = GaugeMetricFamily(
            "proxytier_vip_owned",
            "1 if this node holds the VIP on one of its interfaces (kernel addresses, rtnetlink RTM_GETADDR).",
            labels=["vip"],
        )
        seen: set[IPAddress] = set()
        for text in self.configured():
            address = vip_address(text)
            if address is None:
                raise SourceError(f"{text!r} is not an IP address (check --vip or virtual_ipaddress)")
            if address not in seen:
                seen.add(address)
                family.add_metric([str(address)], 1.0 if address in held else 0.0)
        yield family

    def describe(self) -> list[Metric]:
        return describe_names("proxytier_vip_owned")
