"""One converged proxytier node, seen through testinfra: the same checks run against a kitchen container
(testinfra's docker backend) and against the lab's nodes (its salt backend, through the lab's master).

What to expect is read from the node itself: the formula's own view of the node (map.jinja's `pt`: the OS
parameters and the proxytier model), rendered by the node's Salt, so no address or port is written here.

  kitchen (kitchen.yml's verifier):
    pytest -p no:cacheprovider --hosts=docker://$KITCHEN_CONTAINER_ID \
      --salt-call='salt-call --local --config-dir=/tmp/kitchen/etc/salt' --node-alone tests/node
  lab (on the lab's host, as root):
    .venv/bin/python -m lab.nodecheck            # = pytest --hosts='salt://proxy*' tests/node, lab master config
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .nodelib import PT_RENDER, Node


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("proxytier node checks")
    group.addoption(
        "--salt-call",
        default=os.environ.get("PROXYTIER_SALT_CALL", "salt-call"),
        help="salt-call command on the node, for backends other than salt "
        "(kitchen: 'salt-call --local --config-dir=/tmp/kitchen/etc/salt'); env PROXYTIER_SALT_CALL",
    )
    group.addoption(
        "--node-alone",
        action="store_true",
        default=os.environ.get("PROXYTIER_NODE_ALONE", "") not in ("", "0"),
        help="the node has no VRRP peer (one kitchen container): it must be MASTER of every VIP; "
        "env PROXYTIER_NODE_ALONE=1",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --hosts these checks would run against this machine: skip them, saying why."""
    if config.option.hosts or config.option.connection:
        return
    skip = pytest.mark.skip(
        reason="tests/node checks a converged node: give --hosts (kitchen: docker://ID, lab: salt://proxy*)"
    )
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:  # this hook sees the whole session's items: only ours
            item.add_marker(skip)


@pytest.fixture(scope="module")
def node(host: Any, request: pytest.FixtureRequest) -> Node:
    return Node(host, request.config.getoption("salt_call"), request.config.getoption("node_alone"))


@pytest.fixture(scope="module")
def pt(node: Node) -> dict[str, Any]:
    """The formula's view of this node: map.jinja's `pt` (params + model), rendered by the node's Salt."""
    text = node.salt("slsutil.renderer", **PT_RENDER)
    try:
        view = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        view = None
    if not isinstance(view, dict) or "node" not in view:
        pytest.fail(f"the node's Salt did not render the formula's view of it (map.jinja):\n{str(text)[:3000]}")
    return view


@pytest.fixture(scope="module")
def held(node: Node, pt: dict[str, Any]) -> set[str]:
    """Addresses on the tier interface(s) now."""
    interfaces = {pt["interface"]} | {i["interface"] for i in pt["vrrp"]["instances"]}
    return set().union(*(node.addresses(i) for i in sorted(interfaces)))
