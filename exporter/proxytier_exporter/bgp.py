"""vip_mode bgp: the health gate's decision and BIRD's BGP sessions, routes and BFD sessions, per node.

Sources, read at scrape time (one collector, `bgp`: if either is missing or malformed, SourceError and
`proxytier_collector_success{collector="bgp"} 0`, nothing of it published):

- the gate's state file (proxytier-bgp-gate, salt/proxytier/files/proxytier_bgp_gate.py; the model's
  `bgp.gate.state_file`, default /run/proxytier-bgp-gate/state.json): a JSON object {"announced": bool,
  "since": epoch seconds of the last announce/withdraw, "addresses": [str], "healthy": bool (HAProxy's
  monitor URI answered the last check), "held": bool (the hold file exists), "graceful": bool (announced
  with the GRACEFUL_SHUTDOWN community: a graceful leave in progress; absent from an older gate's file:
  false)}, rewritten within one check interval of any change of announced, healthy, held or graceful. It is
  in the gate's RuntimeDirectory, so it is gone while the gate is stopped: the collector fails then, saying so.
- BIRD's control socket (birdctl.py; Debian's /run/bird/bird.ctl, owner bird:bird, mode 0660, as captured
  from bird2 2.0.12 running as Debian's unit runs it): `show protocols all` (every BGP protocol: its BGP
  state, neighbor address and AS, and per channel the `Routes:` line) and `show bfd sessions` (the BFD
  sessions BGP asked for, by neighbor address). One connection per scrape, `restrict`ed to read-only
  commands; no `birdc` process.

Metrics (gauges; `peer` is BIRD's protocol name, the formula's `peer<n>` in pillar order; `peer_address` and
`peer_asn` are BIRD's "Neighbor address" and "Neighbor AS"):

- proxytier_bgp_gate_announced, proxytier_bgp_gate_healthy, proxytier_bgp_gate_held,
  proxytier_bgp_gate_graceful: 0/1, the state file's fields; proxytier_bgp_gate_last_change_timestamp_seconds:
  its `since` (Unix seconds; `time() - ...` is the age of the current decision);
- proxytier_bgp_session_state{peer, peer_address, peer_asn, state}: a state-set over BIRD's BGP states
  (BGP_STATES; "Down": the protocol is down or disabled; "Passive": waiting for the peer to connect); all 0
  for a state this list does not know;
- proxytier_bgp_routes_exported{peer, peer_address, peer_asn, channel}: routes BIRD exports to the peer on
  that channel (`ipv4`, `ipv6`; the channel's "Routes: ... N exported"), 0 while the channel is down;
- proxytier_bgp_bfd_session_state{peer, peer_address, peer_asn, interface, state}: a state-set over BFD's
  states (BFD_STATES, RFC 5880), for each BGP peer BIRD keeps a BFD session to (`bfd` on in pillar).

Why not bird_exporter's names (github.com/czerwonk/bird_exporter: `bird_protocol_up{name, proto, ip_version,
import_filter, export_filter}`, `bird_protocol_prefix_export_count`, `bird_bfd_session_up{name, ip,
interface}`): its label set depends on its flags (`-format.new`, description labels) and its "up" is BIRD's
protocol state `up`, not a BGP state; a node may well run bird_exporter beside this exporter for BIRD as a
whole, and the same names from two jobs with other label sets would double what dashboards sum. The
proxytier names cover only the formula's sessions and carry what its alerts join on (`peer`). For a
bird_exporter query: bird_protocol_up{proto="BGP"} is proxytier_bgp_session_state{state="Established"},
bird_protocol_prefix_export_count{proto="BGP"} is sum without (channel) (proxytier_bgp_routes_exported), and
bird_bfd_session_up is proxytier_bgp_bfd_session_state{state="Up"}.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from proxytier_exporter import birdctl
from proxytier_exporter.core import SourceError, describe_names, state_set

DEFAULT_STATE_FILE = "/run/proxytier-bgp-gate/state.json"
#: proto/bgp/bgp.c bgp_state_dsc (v2.0.12): "Down" for a protocol that is down, "Passive" for an idle passive
#: session, else bgp_state_names
BGP_STATES = ("Down", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close", "Passive")
#: proto/bfd/bfd.c bfd_state_names
BFD_STATES = ("AdminDown", "Down", "Init", "Up")
MAX_STATE_FILE_BYTES = 64 * 1024
COMMANDS = ("show protocols all", "show bfd sessions")
_ROUTES = re.compile(r"(\d+) (imported|filtered|exported|preferred)")


@dataclass
class Peer:
    """One BGP protocol of `show protocols all`."""

    name: str
    state: str = ""
    address: str = ""
    asn: str = ""
    #: channel name -> routes exported
    exported: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BfdSession:
    """One row of `show bfd sessions`."""

    address: str
    interface: str
    state: str


@dataclass(frozen=True)
class GateState:
    announced: bool
    healthy: bool
    held: bool
    since: float
    graceful: bool = False


def parse_protocols(reply: birdctl.Reply) -> list[Peer]:
    """The BGP protocols of a `show protocols all` reply (birdctl.parse_reply), in BIRD's order.

    A protocol is a 1002 row ("name proto table state since info"); its details are the 1006 lines after it:
    "BGP state:", "Neighbor address:", "Neighbor AS:", and per "Channel <name>" its "Routes: N imported, M
    exported, K preferred" (no Routes line while the channel is down: 0 exported). Raises SourceError for a
    reply without its 2002 heading, or a BGP protocol without a "BGP state:" line."""
    if not reply or reply[0][0] != 2002:
        raise SourceError(f"BIRD: `show protocols all` did not start with its table heading: {reply[:1]!r}")
    peers: list[Peer] = []
    current: Peer | None = None
    channel: str | None = None
    for code, text in reply:
        if code == 1002:
            fields = text.split()
            if len(fields) < 4:
                raise SourceError(f"BIRD: `show protocols all` row {text!r} has fewer than 4 columns")
            current = Peer(fields[0]) if fields[1] == "BGP" else None
            channel = None
            if current is not None:
                peers.append(current)
        elif code == 1006 and current is not None:
            key, _, value = text.strip().partition(":")
            value = value.strip()
            if key == "BGP state":
                current.state = value
            elif key == "Neighbor address":
                current.address = value
            elif key == "Neighbor AS":
                current.asn = value
            elif text.strip().startswith("Channel "):
                channel = text.strip().split()[1]
                current.exported[channel] = 0
            elif key == "Routes" and channel is not None:
                counts = {kind: int(number) for number, kind in _ROUTES.findall(value)}
                if "exported" not in counts:
                    raise SourceError(f"BIRD: protocol {current.name} channel {channel}: no export count in "
                                      f"{text.strip()!r}")
                current.exported[channel] = counts["exported"]
    for peer in peers:
        if not peer.state:
            raise SourceError(f"BIRD: BGP protocol {peer.name} has no `BGP state:` line in `show protocols all`")
    return peers


def parse_bfd_sessions(reply: birdctl.Reply) -> list[BfdSession]:
    """The rows of a `show bfd sessions` reply: for each BFD protocol a 1020 line "<name>:", a heading
    "IP address  Interface  State  Since  Interval  Timeout" and one row per session. A BIRD without a BFD
    protocol answers "0000" alone (no session). Raises SourceError for a row of fewer than 3 columns or a
    missing heading."""
    sessions: list[BfdSession] = []
    heading = False
    for code, text in reply:
        if code != 1020:
            continue
        fields = text.split()
        if text.rstrip().endswith(":") and len(fields) == 1:
            heading = False
            continue
        if fields[:2] == ["IP", "address"]:
            heading = True
            continue
        if not heading or len(fields) < 3:
            raise SourceError(f"BIRD: unexpected `show bfd sessions` line {text!r}")
        sessions.append(BfdSession(fields[0], fields[1], fields[2]))
    return sessions


def parse_gate_state(text: str, path: str) -> GateState:
    """The gate's state file (see the module's docstring). Raises SourceError naming `path` for text that is
    not a JSON object with booleans announced, healthy, held (and graceful, when present) and a finite number
    `since`."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise SourceError(f"BGP gate state file {path}: not JSON ({error})") from error
    if not isinstance(data, dict):
        raise SourceError(f"BGP gate state file {path}: not a JSON object")
    for key in ("announced", "healthy", "held"):
        if not isinstance(data.get(key), bool):
            raise SourceError(f"BGP gate state file {path}: {key!r} is {data.get(key)!r}, not true or false")
    since = data.get("since")
    if isinstance(since, bool) or not isinstance(since, (int, float)) or not math.isfinite(since):
        raise SourceError(f"BGP gate state file {path}: 'since' is {since!r}, not a Unix time")
    graceful = data.get("graceful", False)
    if not isinstance(graceful, bool):
        raise SourceError(f"BGP gate state file {path}: 'graceful' is {graceful!r}, not true or false")
    return GateState(data["announced"], data["healthy"], data["held"], float(since), graceful)


def read_gate_state(path: str) -> GateState:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STATE_FILE_BYTES + 1)
    except FileNotFoundError as error:
        raise SourceError(f"BGP gate state file {path} does not exist (is proxytier-bgp-gate running?)") from error
    except OSError as error:
        raise SourceError(f"BGP gate state file {path}: {error.strerror or error}") from error
    if len(raw) > MAX_STATE_FILE_BYTES:
        raise SourceError(f"BGP gate state file {path}: over {MAX_STATE_FILE_BYTES} bytes")
    return parse_gate_state(raw.decode("utf-8", errors="replace"), path)


def gate_families(gate: GateState) -> Iterator[Metric]:
    """The gate's five gauges."""
    for key, doc in (
        ("announced", "1 if the BGP health gate announces the node's service addresses (its routes are in its "
                      "kernel table, which BIRD exports), else 0 (gate state file: announced)."),
        ("healthy", "1 if HAProxy's monitor URI answered the gate's last check, else 0 (gate state file: healthy)."),
        ("held", "1 if the gate's hold file exists (run-time maintenance: withdrawn, or announced for a graceful "
                 "shutdown), else 0 (gate state file: held)."),
        ("graceful", "1 if the gate announces with the GRACEFUL_SHUTDOWN community (RFC 8326: a graceful leave in "
                     "progress; routers should send the node no new flows), else 0 (gate state file: graceful)."),
    ):
        yield GaugeMetricFamily(f"proxytier_bgp_gate_{key}", doc, value=1.0 if getattr(gate, key) else 0.0)
    yield GaugeMetricFamily(
        "proxytier_bgp_gate_last_change_timestamp_seconds",
        "When the gate last announced or withdrew the addresses, Unix seconds (gate state file: since).",
        value=gate.since)


def bird_families(peers: list[Peer], sessions: list[BfdSession]) -> Iterator[Metric]:
    """Session state-set, routes exported, and BFD state-set per BGP peer (see the module's docstring)."""
    labels = ["peer", "peer_address", "peer_asn"]
    state, add_state = state_set(
        "proxytier_bgp_session_state", "BGP session state of each BGP protocol of BIRD, one series per state "
        "(show protocols all: BGP state).", labels, BGP_STATES)
    exported = GaugeMetricFamily(
        "proxytier_bgp_routes_exported", "Routes BIRD exports to the BGP peer on the channel (show protocols all: "
        "channel Routes, exported; 0 while the channel is down).", labels=[*labels, "channel"])
    bfd, add_bfd = state_set(
        "proxytier_bgp_bfd_session_state", "State of the BFD session BIRD keeps for the BGP peer, one series "
        "per state (show bfd sessions: State).", [*labels, "interface"], BFD_STATES)
    by_address = {session.address: session for session in sessions}
    for peer in peers:
        values = [peer.name, peer.address, peer.asn]
        add_state(values, peer.state if peer.state in BGP_STATES else None)
        for channel, count in peer.exported.items():
            exported.add_metric([*values, channel], float(count))
        session = by_address.get(peer.address)
        if session is not None:
            add_bfd([*values, session.interface], session.state if session.state in BFD_STATES else None)
    yield state
    yield exported
    yield bfd


class BgpCollector:
    """The gate's state file and BIRD's control socket, read at scrape time."""

    name = "bgp"

    def __init__(self, bird_socket: str = birdctl.DEFAULT_SOCKET, state_file: str = DEFAULT_STATE_FILE,
                 timeout: float = 2.0,
                 query: Callable[[str, tuple[str, ...], float], dict[str, birdctl.Reply]] = birdctl.query):
        self.bird_socket = bird_socket
        self.state_file = state_file
        self.timeout = timeout
        self.query = query

    def collect(self) -> Iterator[Metric]:
        gate = read_gate_state(self.state_file)
        replies = self.query(self.bird_socket, COMMANDS, self.timeout)
        peers = parse_protocols(replies["show protocols all"])
        sessions = parse_bfd_sessions(replies["show bfd sessions"])
        yield from gate_families(gate)
        yield from bird_families(peers, sessions)

    def describe(self) -> list[Metric]:
        return describe_names(
            "proxytier_bgp_gate_announced", "proxytier_bgp_gate_healthy", "proxytier_bgp_gate_held",
            "proxytier_bgp_gate_graceful", "proxytier_bgp_gate_last_change_timestamp_seconds",
            "proxytier_bgp_session_state",
            "proxytier_bgp_routes_exported", "proxytier_bgp_bfd_session_state",
        )
