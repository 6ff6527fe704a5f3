"""Session-wide test settings. With PROXYTIER_REQUIRE_TOOLS=1 (CI sets it), a daemon or tool the
suites need but the machine lacks fails the run at once, instead of letting the suites that need it
skip unseen."""

from __future__ import annotations

import os
import shutil

import pytest

#: what the non-lab suites run for real (lab/host-deps.sh installs them all)
REQUIRED_TOOLS = ("nginx", "haproxy", "keepalived", "bird", "nft", "unshare", "openssl", "promtool", "prometheus",
                  "socat", "shellcheck", "ip")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PROXYTIER_REQUIRE_TOOLS", "") in ("", "0"):
        return
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"missing {', '.join(missing)}: the tests that need them would only skip; run `sh lab/host-deps.sh`"
        )
