"""Talking to a daemon over a unix stream socket: one command, read until the daemon closes."""

from __future__ import annotations

import socket
import time

from proxytier_exporter.core import SourceError

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def unix_command(path: str, command: str, timeout: float) -> str:
    """Send `command` to the unix socket at `path` and return the whole answer as text.

    HAProxy's runtime API (non-interactive mode) answers one command and closes the connection.
    The whole exchange, not each read, is bounded by `timeout`.
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(command.encode() + b"\n")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(262144)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise SourceError(f"{path}: answer to {command!r} is over {MAX_RESPONSE_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError as error:
        raise SourceError(f"{path}: no complete answer to {command!r} within {timeout}s") from error
    except FileNotFoundError as error:
        raise SourceError(f"{path}: socket does not exist (is the daemon running?)") from error
    except PermissionError as error:
        raise SourceError(f"{path}: permission denied (is the exporter in the socket's group?)") from error
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror or error}") from error
    return b"".join(chunks).decode("utf-8", errors="replace")
