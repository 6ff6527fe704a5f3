"""proxytier's state functions: what a plain ``file.managed`` cannot do as cheaply.

Synced like the execution module (``saltutil.sync_all``, which ``state.apply`` runs first, or
``saltutil.sync_states``).

``tls_file``: one TLS file (certificate, chain, key) HAProxy terminates with. The PEM is built on the
minion by ``proxytier.tls_pem`` and handed to ``file.managed`` in this process, so key material is in
no state's data, low chunk or job return (``show_changes`` is forced off). It replaces a
``file.managed`` whose Jinja template asked ``proxytier.tls_pem``: the same file, mode and check,
without fetching and rendering a template per certificate. At 200 TLS sites on 5 nodes that
template cost 70-85 ms per file and no-op apply (14-17 s of a node's 36 s of state time,
bench/scale --lab).
"""

from __future__ import annotations

from typing import Any


def tls_file(
    name: str,
    check: str | None = None,
    user: str = "root",
    group: str = "root",
    mode: str = "0600",
) -> dict[str, Any]:
    """Manage the TLS file `name` (an absolute path that a TLS site of this node's model writes:
    ``<tls_dir>/<site>.pem``) with the PEM ``proxytier.tls_pem(name)`` builds from pillar.

    check: a command run with the staged file appended (``file.managed``'s ``check_cmd``): the file
    replaces the live one only if it exits 0 (the formula's check-haproxy-crt: HAProxy loads it). Not
    named ``check_cmd``: that is also a keyword of every state (salt/state.py STATE_RUNTIME_KEYWORDS),
    which Salt itself would then run after the state, without the file, and look up a
    ``mod_run_check_cmd`` here for, reloading the state modules each time (~25 ms a state).
    user, group, mode: the file's owner and mode (default root:root 0600).

    Returns ``file.managed``'s return (result, comment, changes without a diff). A path no site of this
    node writes fails the state with proxytier.tls_pem's message and changes nothing.
    """
    try:
        pem = __salt__["proxytier.tls_pem"](name)  # noqa: F821 - injected by Salt
    except Exception as exc:  # ProxytierError (a class of the module's own load) or any other: the state fails
        return {"name": name, "result": False, "changes": {}, "comment": f"proxytier.tls_pem: {exc}"}
    kwargs: dict[str, Any] = {"user": user, "group": group, "mode": mode, "show_changes": False}
    if check:
        kwargs["check_cmd"] = check
    return __states__["file.managed"](name=name, contents=pem, **kwargs)  # noqa: F821
