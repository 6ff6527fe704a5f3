"""Run the node checks (tests/node, the ones kitchen's verifier runs) against the lab's nodes.

testinfra's salt backend reaches the nodes through a salt.client.LocalClient, which reads the master
config named by SALT_MASTER_CONFIG: here, the lab master's. Read-only: the checks change nothing.

    .venv/bin/python -m lab.nodecheck [TARGET] [pytest args...]     # TARGET defaults to 'proxy*'
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from lab import config
from lab.sh import LabError

NODE_TESTS = config.REPO / "tests" / "node"


def command(target: str = "proxy*", extra: list[str] | None = None, hosts: str | None = None) -> list[str]:
    """The pytest command line checking the lab nodes matching `target` (a salt glob or compound target),
    or the testinfra `hosts` URL given instead."""
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        f"--hosts={hosts or 'salt://' + target}", *(extra or []), str(NODE_TESTS),
    ]


def checks_per_node() -> int:
    """How many checks tests/node runs on one host (pytest's collection for a local host); LabError if
    pytest collects none."""
    proc = subprocess.run(command(extra=["--collect-only"], hosts="local://"), cwd=config.REPO, capture_output=True,
                          text=True, timeout=120)
    found = re.search(r"(\d+) tests? collected", proc.stdout)
    if not found:
        raise LabError(f"tests/node collected nothing:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return int(found.group(1))


def env() -> dict[str, str]:
    """This environment plus SALT_MASTER_CONFIG pointing at the lab master's config."""
    return {**os.environ, "SALT_MASTER_CONFIG": str(config.SALT_CONFIG)}


def run_node_checks(target: str = "proxy*", extra: list[str] | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run tests/node against the lab nodes matching `target`; returns (pytest's exit status, its output)."""
    if not config.SALT_CONFIG.is_file():
        raise LabError(f"no lab master config at {config.SALT_CONFIG}: the lab is not up (make lab-up)")
    try:
        proc = subprocess.run(
            command(target, extra), cwd=config.REPO, env=env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"node checks did not finish within {timeout:.0f} s") from e
    return proc.returncode, proc.stdout + proc.stderr


def main(argv: list[str]) -> int:
    target = argv[0] if argv and not argv[0].startswith("-") else "proxy*"
    extra = argv[1:] if argv and not argv[0].startswith("-") else argv
    try:
        rc, output = run_node_checks(target, extra)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(output, end="")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
