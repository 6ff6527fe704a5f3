"""A client of BIRD's control socket (what `birdc` speaks), for the bgp collector.

The protocol (BIRD's user's guide, "Remote control"; sysdep/unix/main.c and nest/cli.c at v2.0.12): on
connect BIRD greets with `0001 BIRD <version> ready.`; each command is one line; each reply line starts
with a four-digit code and a '-' (more lines follow) or a ' ' (the reply's last line), and a line that
starts with a space continues the previous line's code. Codes 0xxx end a successful command, 1xxx are
table rows, 2xxx table headings, 8xxx run-time errors and 9xxx parse errors.

The client reads the socket directly, once per scrape (no `birdc` process per scrape), and first sends
`restrict` (what `birdc -r` does): from then on BIRD refuses every command that would change something
(`configure`, `disable`, `down`, ...) on this connection, so a bug in the exporter can only read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from proxytier_exporter.core import SourceError

#: Debian's bird2 (and BIRD's default build for Debian: --runstatedir=/run/bird)
DEFAULT_SOCKET = "/run/bird/bird.ctl"
MAX_REPLY_BYTES = 4 * 1024 * 1024

Reply = list[tuple[int, str]]


def parse_reply(text: str) -> Reply:
    """The lines of one whole reply as [(code, text)], continuation lines (a leading space) under the
    code of the line before them, without the code and separator. Raises SourceError for a line that
    is neither, or for a reply that does not end with a final line (`DDDD ` + text)."""
    lines: Reply = []
    code = None
    ended = False
    for number, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        if ended:
            raise SourceError(f"BIRD control socket: line {number} after the end of the reply: {line[:60]!r}")
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            code = int(line[:4])
            lines.append((code, line[5:]))
            ended = line[4] == " "
        elif line.startswith(" ") and code is not None:
            lines.append((code, line[1:]))
        else:
            raise SourceError(f"BIRD control socket: line {number} is not a reply line: {line[:60]!r}")
    if not ended:
        raise SourceError("BIRD control socket: the reply ended without its final line (cut short?)")
    return lines


def reply_end(buffer: bytes) -> int | None:
    """The length of the first whole reply at the start of `buffer` (up to and including its final line's
    newline), None if it is not complete yet."""
    start = 0
    while True:
        newline = buffer.find(b"\n", start)
        if newline < 0:
            return None
        line = buffer[start:newline]
        if len(line) >= 5 and line[:4].isdigit() and line[4:5] == b" ":
            return newline + 1
        start = newline + 1


def check_reply(command: str, reply: Reply) -> Reply:
    """`reply` if it is not an error (8xxx run time, 9xxx parse); else SourceError with BIRD's message."""
    final_code, final_text = reply[-1]
    if final_code >= 8000:
        raise SourceError(f"BIRD refused {command!r}: {final_code} {final_text.strip()}")
    return reply


def query(path: str, commands: Sequence[str], timeout: float = 2.0) -> dict[str, Reply]:
    """Connect to BIRD's control socket at `path`, `restrict` the session, run `commands` one after the
    other and return {command: reply}. `timeout` bounds the whole exchange, in seconds. Raises SourceError
    naming the socket for a missing socket, a refused connection (BIRD stopped; permission: the exporter's
    user needs BIRD's group, `bird` on Debian), a timeout, a reply over MAX_REPLY_BYTES, or an error reply."""
    deadline = time.monotonic() + timeout
    replies: dict[str, Reply] = {}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            buffer = b""
            for command in (None, "restrict", *commands):
                if command is not None:
                    sock.sendall(command.encode("ascii") + b"\n")
                while (end := reply_end(buffer)) is None:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise SourceError(f"BIRD control socket {path}: closed by BIRD in the middle of a reply")
                    buffer += chunk
                    if len(buffer) > MAX_REPLY_BYTES:
                        raise SourceError(f"BIRD control socket {path}: reply over {MAX_REPLY_BYTES} bytes")
                reply = parse_reply(buffer[:end].decode("utf-8", errors="replace"))
                buffer = buffer[end:]
                if command is None:
                    if reply[-1][0] != 1:
                        raise SourceError(f"BIRD control socket {path}: unexpected greeting {reply[-1]!r}")
                elif command == "restrict":
                    check_reply(command, reply)
                else:
                    replies[command] = check_reply(command, reply)
    except FileNotFoundError as error:
        raise SourceError(f"BIRD control socket {path} does not exist (is bird running?)") from error
    except PermissionError as error:
        raise SourceError(f"BIRD control socket {path}: permission denied (the exporter's user needs BIRD's "
                          "group, `bird` on Debian)") from error
    except ConnectionRefusedError as error:
        raise SourceError(f"BIRD control socket {path}: connection refused (bird stopped?)") from error
    except TimeoutError as error:
        raise SourceError(f"BIRD control socket {path}: no whole answer within {timeout} s") from error
    except OSError as error:
        raise SourceError(f"BIRD control socket {path}: {error.strerror or error}") from error
    return replies
