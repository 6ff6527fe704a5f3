#!/usr/bin/python3
"""proxytier-bgp-gate: the node announces its service addresses only while its HAProxy serves.

vip_mode bgp (salt/_utils/proxytier_bgp.py). BIRD exports an address only while a route for it is
in the gate's kernel table (``protocol kernel { kernel table N; learn; }``, which BIRD hears from
netlink at once). This service puts the addresses on the node (``interface``, default ``lo``),
asks HAProxy's monitor URI every ``interval`` seconds, and keeps those routes:

- added after ``rise`` good answers in a row, while no hold file exists;
- deleted after ``fall`` failed answers in a row (HAProxy dead or not serving), or at once when
  the hold file (``hold_file``, in /run) exists: the run-time maintenance switch of orchestrations;
- kept but marked, while the hold file's first word is ``graceful``: the route's protocol becomes
  ``graceful_proto`` instead of ``static`` (``ip route replace`` changes it in place; BIRD hears the
  change and reads it as ``krt_source``), and bird.conf's export filter then adds the
  GRACEFUL_SHUTDOWN community (65535:0, RFC 8326) to the announcement. Routers that honour it (local
  preference 0) stop choosing the node for new flows while its path stays, and a router that drains
  (lab/resilient.py) keeps its established flows on it. The addresses are still withdrawn when
  HAProxy fails, and a node withdrawn before the hold stays withdrawn until the hold goes;
- deleted when it stops (SIGTERM); its unit also flushes the table after any exit (ExecStopPost),
  so a crashed gate announces nothing.

Every 5 s it writes what it decided again (a route deleted by hand comes back, one added by hand
goes). SIGHUP re-reads the configuration (a JSON file rendered from the model: table, interval,
fall, rise, interface, addresses, monitor_url, hold_file, state_file), adds new addresses and
removes the ones it added that are gone. ``state_file`` gets {"announced", "since", "addresses",
"healthy", "held", "graceful"} whenever one of announced, healthy, held or graceful changes (so
within one ``interval``), for the exporter's bgp collector.

``--retire`` (root; keepalived.sls runs it when a node goes back to VRRP mode, after the gate has
stopped) takes away what the gate leaves by design: its routes and the addresses it put on the
interface (a stopped gate leaves them, so that established connections outlive a restart).

Standard library only; runs as an unprivileged user with CAP_NET_ADMIN (its unit).
Usage: proxytier_bgp_gate.py CONFIG.json | proxytier_bgp_gate.py --retire CONFIG.json
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

REASSERT_S = 5.0
#: the hold file's first word that asks for a graceful shutdown instead of a withdraw
GRACEFUL = "graceful"


def prefix(address: str) -> str:
    """An address as a host route: 198.18.0.100/32 or 2001:2::100/128."""
    return f"{address}/{128 if ':' in address else 32}"


def ip(*args: str) -> bool:
    """Run `ip ARGS`; True on success (its error goes to the journal)."""
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=5)
    if res.returncode != 0:
        print(f"ip {' '.join(args)}: {res.stderr.strip()}", file=sys.stderr, flush=True)
    return res.returncode == 0


def family(address: str) -> str:
    """`ip`'s family flag for an address: -4 or -6."""
    return "-6" if ":" in address else "-4"


def healthy(url: str, timeout: float) -> bool:
    """HAProxy's monitor URI answers 200 within `timeout` seconds."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Gate:
    """The gate's state: the configuration, whether it announces, and the check counters."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cfg: dict[str, Any] = {}
        self.added: list[str] = []  # addresses this gate put on the interface
        self.announced = False
        self.graceful = False  # announced with the GRACEFUL_SHUTDOWN mark
        self.since = time.time()
        self.ups = self.downs = 0
        self.last_ok = False
        self.written: tuple[bool, bool, bool, bool] | None = None  # (announced, healthy, held, graceful) written
        self.reload_wanted = False
        self.stop_wanted = False

    def load(self) -> None:
        """(Re-)read the configuration; put its addresses on the interface and remove the ones
        this gate added before that are no longer listed."""
        with open(self.path, encoding="utf-8") as f:
            new = json.load(f)
        old_addresses = self.cfg.get("addresses", [])
        for a in new["addresses"]:
            extra = ["preferred_lft", "0"] if ":" in a else []
            ip(family(a), "addr", "replace", prefix(a), "dev", new["interface"], *extra)
        for a in old_addresses:
            if a not in new["addresses"]:
                self.route(a, False, self.cfg)
                ip(family(a), "addr", "del", prefix(a), "dev", self.cfg["interface"])
        self.cfg = new
        self.added = list(new["addresses"])

    def route(self, address: str, on: bool, cfg: dict[str, Any] | None = None) -> None:
        """Add (on) or delete the gate route of `address` (proto static, or graceful_proto while graceful)."""
        cfg = cfg or self.cfg
        table = str(cfg["table"])
        if on:
            proto = str(cfg.get("graceful_proto", 4)) if self.graceful else "static"
            ip(family(address), "route", "replace", prefix(address), "dev", cfg["interface"],
               "table", table, "proto", proto)
        else:
            # deleting a route that is not there fails: nothing to withdraw then
            subprocess.run(["ip", family(address), "route", "del", prefix(address), "table", table],
                           capture_output=True, timeout=5)

    def apply(self) -> None:
        """Write the current decision into the kernel table again, for every address."""
        for a in self.cfg["addresses"]:
            self.route(a, self.announced)

    def set(self, announced: bool, why: str, graceful: bool = False) -> None:
        """Announce (True; marked for a graceful shutdown with `graceful`) or withdraw every address, log
        a change with `why`, write the state file."""
        graceful = announced and graceful
        if announced != self.announced or graceful != self.graceful:
            if announced != self.announced:
                self.since = time.time()
            self.announced, self.graceful = announced, graceful
            verb = ("announce (graceful shutdown)" if graceful else "announce") if announced else "withdraw"
            print(f"{verb}: {why}", flush=True)
        self.apply()
        self.write_state()

    def write_state(self) -> None:
        """The state file (JSON, replaced atomically): announced, since (epoch s), addresses, healthy, held,
        graceful."""
        held = self.hold() is not None
        state = {"announced": self.announced, "since": self.since, "addresses": self.cfg["addresses"],
                 "healthy": self.last_ok, "held": held, "graceful": self.graceful}
        self.written = (self.announced, self.last_ok, held, self.graceful)
        tmp = f"{self.cfg['state_file']}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(tmp, self.cfg["state_file"])
        except OSError as e:
            print(f"state file: {e}", file=sys.stderr, flush=True)

    def hold(self) -> str | None:
        """The hold file (the run-time maintenance switch): None when there is none, GRACEFUL when its
        first word is "graceful", else "withdraw" (an empty file too: `touch` withdraws)."""
        try:
            with open(self.cfg["hold_file"], encoding="utf-8", errors="replace") as f:
                words = f.read(256).split()
        except FileNotFoundError:
            return None
        except OSError:
            return "withdraw"  # there, but unreadable: the safe side
        return GRACEFUL if words and words[0] == GRACEFUL else "withdraw"

    def step(self) -> None:
        """One check: count it, and announce, mark or withdraw when a threshold or the hold file says so."""
        hold = self.hold()
        ok = healthy(self.cfg["monitor_url"], max(0.05, self.cfg["interval"]))
        self.last_ok = ok
        self.ups, self.downs = (self.ups + 1, 0) if ok else (0, self.downs + 1)
        if self.announced and hold == "withdraw":
            self.set(False, f"hold file {self.cfg['hold_file']} present")
        elif self.announced and self.downs >= self.cfg["fall"]:
            self.set(False, f"HAProxy failed {self.downs} check(s) in a row")
        elif not self.announced and hold is None and self.ups >= self.cfg["rise"]:
            self.set(True, f"HAProxy passed {self.ups} check(s) in a row")
        elif self.announced and self.graceful != (hold == GRACEFUL):
            self.set(True, f"hold file {self.cfg['hold_file']} says graceful" if hold == GRACEFUL
                     else "graceful hold lifted", graceful=hold == GRACEFUL)
        elif self.written != (self.announced, ok, hold is not None, self.graceful):
            # no decision, but what the exporter reads changed (HAProxy's answer, the hold file)
            self.write_state()

    def run(self) -> int:
        """Load, start withdrawn, check every `interval` s until SIGTERM; -> exit status 0."""
        self.load()
        self.set(False, "starting")
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_wanted", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_wanted", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stop_wanted", True))
        last_assert = time.monotonic()
        while not self.stop_wanted:
            started = time.monotonic()
            if self.reload_wanted:
                self.reload_wanted = False
                try:
                    self.load()
                except (OSError, ValueError, KeyError) as e:
                    print(f"reload failed, keeping the old configuration: {e}", file=sys.stderr, flush=True)
                self.set(self.announced, "configuration reloaded", self.graceful)
            self.step()
            if started - last_assert >= REASSERT_S:
                self.apply()
                last_assert = started
            time.sleep(max(0.0, self.cfg["interval"] - (time.monotonic() - started)))
        self.set(False, "stopping")
        return 0


def retire_commands(cfg: dict[str, Any]) -> list[list[str]]:
    """The `ip` argument lists that take away what a gate with configuration `cfg` leaves on the node:
    per address, its route in the gate's table, then the address on the interface."""
    out = []
    for a in cfg["addresses"]:
        out.append([family(a), "route", "del", prefix(a), "table", str(cfg["table"])])
        out.append([family(a), "addr", "del", prefix(a), "dev", cfg["interface"]])
    return out


def retire(path: str) -> int:
    """Run retire_commands for the configuration at `path` (one already gone is not an error: exit 0,
    each `ip` that finds nothing to delete is ignored); prints what it removed. Exit 1 if the file
    cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    for args in retire_commands(cfg):
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=5)
        if done.returncode == 0:
            print(f"ip {' '.join(args)}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--retire":
        return retire(argv[2])
    if len(argv) != 2:
        print("usage: proxytier_bgp_gate.py CONFIG.json | proxytier_bgp_gate.py --retire CONFIG.json",
              file=sys.stderr)
        return 2
    return Gate(argv[1]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
