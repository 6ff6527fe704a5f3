"""proxytier execution functions: thin Salt entry points over the formula's shared code in
``salt/_utils`` (synced to minions with the modules: ``saltutil.sync_all``).

- ``proxytier.params``: the OS parameters, layered once (proxytier_params).
- ``proxytier.model``: the validated model of the tier for this minion (proxytier_model); map.jinja
  asks for it with ``cache=True``: built once per state run, not once per SLS (``_run_cache``).
- ``proxytier.address``: the mine function giving this node's own addresses.
- ``proxytier.monitoring``: the validated model of proxytier.monitoring on a Prometheus minion
  (proxytier_monitoring).
- ``proxytier.member_state``, ``verify``, ``handover``, ``reinstall``: runtime operations for
  rolling changes (proxytier_runtime, proxytier_handover).
- ``proxytier.stop_vrrp``, ``retire``: a node joining (orch/join.sls) and leaving (orch/leave.sls).

Errors are ProxytierError (a CommandExecutionError inside Salt) whose message names the pillar
key, the value and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
from typing import Any

__virtualname__ = "proxytier"
log = logging.getLogger(__name__)

_UTILS = (
    "proxytier_schema", "proxytier_params", "proxytier_model", "proxytier_members",
    "proxytier_runtime", "proxytier_handover", "proxytier_monitoring",
)


def __virtual__():
    # Salt puts extmods/utils on sys.path when it syncs (saltstack/salt #52001); make sure of it
    # for a minion that loaded this module before its first sync of _utils.
    utils_dir = os.path.join(__opts__.get("extension_modules", ""), "utils")  # noqa: F821 - injected by Salt
    if os.path.isdir(utils_dir) and utils_dir not in sys.path:
        sys.path.insert(0, utils_dir)
    try:
        for name in _UTILS:
            __import__(name)
    except ImportError as exc:
        return False, f"proxytier: the formula's _utils are not synced ({exc}); run saltutil.sync_all"
    return __virtualname__


def _lib(name: str) -> Any:
    return sys.modules.get(name) or __import__(name)


def params(tplroot: str = "proxytier", cache: bool = False) -> dict[str, Any]:
    """The formula's OS parameters for this minion: parameters/defaults.yaml, then the os_family,
    os and osfinger files that exist, then pillar proxytier:lookup (proxytier_params). `tplroot`
    is the formula's directory on the master (map.jinja passes its own).

    cache=True (map.jinja, and ``tls_pem`` for each TLS file): inside a state run, the files are
    fetched from the master once per run, not once per SLS and TLS file (``_run_cache``); outside a
    state run (CLI, runtime functions) it changes nothing.

    CLI: ``salt proxy1 proxytier.params``."""

    def read(rel: str) -> str | None:
        return __salt__["cp.get_file_str"](f"salt://{tplroot}/parameters/{rel}") or None  # noqa: F821

    # __pillar__, not pillar.get: Salt 3008's pillar.get returns every value masked ("**********",
    # salt/utils/secret.py) unless a template is being rendered, so a state function (tls_file)
    # asking for the parameters would get masked paths
    pillar = __pillar__.get("proxytier")  # noqa: F821 - injected by Salt
    lookup = pillar.get("lookup", {}) if isinstance(pillar, dict) else {}
    grains = __grains__  # noqa: F821 - injected by Salt
    load = _lib("proxytier_params").load_params
    if not cache:
        return load(read, grains, lookup)
    layers = {g: grains.get(g) for g in _lib("proxytier_params").LAYER_GRAINS}
    return _cached("params", (tplroot, layers, lookup), lambda: load(read, grains, lookup))


_os_params = params


def _pillar() -> dict[str, Any]:
    pillar = __pillar__.get("proxytier", {})  # noqa: F821 - injected by Salt
    return pillar if isinstance(pillar, dict) else {}


def _mine(pillar: Any) -> dict[str, Any] | None:
    """Mine data for members_from_mine (None when members are listed in pillar)."""
    mcfg = pillar.get("members_from_mine") if isinstance(pillar, dict) else None
    if not (isinstance(mcfg, dict) or mcfg == {}):
        return None
    m = _lib("proxytier_members").mine_settings(mcfg)
    return __salt__["mine.get"](m["target"], m["function"], tgt_type=m["tgt_type"])  # noqa: F821


def _nginx_record(os_params: dict[str, Any]) -> dict[str, Any] | None:
    """The nginx ports the last successful apply configured on this node (None if unknown).
    Written by haproxy.sls's ``proxytier-haproxy-nginx-ports-record``, the run's last state."""
    try:
        with open(os_params.get("nginx_ports_file", "/var/lib/proxytier/nginx-ports.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def model(params: dict[str, Any] | None = None, cache: bool = False) -> dict[str, Any]:
    """The validated model of the tier for this minion, built with `params` (default: this
    minion's ``proxytier.params``). CLI: ``salt proxy1 proxytier.model``.

    cache=True (map.jinja only): inside a state run, the model is built once per run for the same
    inputs (pillar, minion id, params, the nginx ports record) and each caller gets its own copy
    (``_cached``, ``_run_cache``). The mine is then asked once per run, not once per SLS: every
    SLS of the run sees the same members (each asked again before, a few ms apart, during the
    compile). The nginx ports record is read at each call and keys the cache; the run writes it in
    its last state (haproxy.sls), after every SLS was rendered, so each SLS reads what it read
    before. Outside a state run, and for every other caller (the CLI, member_state, verify,
    handover, the haproxy_* functions a state run calls), the model is built fresh."""
    pillar = __pillar__.get("proxytier", {})  # noqa: F821
    os_params = params if params is not None else _os_params()
    previous = _nginx_record(os_params)

    def build() -> dict[str, Any]:
        built = _lib("proxytier_model").build_model(
            pillar, __opts__["id"], mine=_mine(pillar), params=os_params, nginx_previous=previous  # noqa: F821
        )
        for ignored in built.get("members_ignored", []):
            log.warning("proxytier: minion %(id)s (%(address)s) is not a member: %(why)s", ignored)
        return built

    if not cache:
        return build()
    return _cached("model", (__opts__["id"], pillar, os_params, previous), build)  # noqa: F821


#: the key of the run cache in ``__context__`` (``_run_cache``)
_CONTEXT_KEY = "proxytier.run_cache"


def _run_cache() -> dict[str, Any] | None:
    """The cache of this state run: a dict in ``__context__`` that lives exactly as long as the
    run's ``salt.state.State``, or None outside a state run (nothing is cached then).

    Where that comes from (salt/state.py and salt/modules/state.py, Salt 3006.29 and 3008.3 alike):
    - every state function (``state.apply``, ``highstate``, ``sls``, ``sls_id``, ``show_*``...)
      builds its State with ``context=dict(__context__)``: a new dict per run, a shallow copy of the
      minion's context, so what a run stores never goes back to the minion, whether its jobs run in
      a process of their own (``multiprocessing: True``) or in threads of the daemon sharing one
      context (``multiprocessing: False``);
    - ``State.__init__`` sets ``self.state_con["fileclient"] = self.file_client`` (a file client
      made for this State by ``salt.fileclient.get_file_client``; HighState passes its own, made
      the same way), then ``load_modules`` loads the execution modules (``minion_mods(opts,
      self.state_con, ...)``; with ``whitelist_modules`` both of its loaders share that dict), the
      renderers (``salt.loader.render(..., context=self.state_con)``: the Jinja of every SLS, whose
      ``salt`` is those execution modules) and the states (``file.managed`` renders its template
      through ``file.get_managed``, whose ``salt`` is the same loader; ``module.run`` calls the same
      loader). A module refresh during the run (``load_modules`` again) keeps ``state_con``.
    So every SLS of one run, and every template its file states render, see one ``__context__``;
    and the only ``"fileclient"`` in it is that State's (the minion's own context has none: Salt
    sets that key only in State and in salt-ssh's master-side wrappers, which never run this
    module). The cache is stored with that file client and used only while ``__context__`` still
    holds the same object: a State nested in the run (``state.sls`` called by a state) copies the
    dict, gets its own file client, and starts an empty cache of its own instead of reusing ours.
    Entries are keyed by their inputs too (``_cached``)."""
    context = __context__  # noqa: F821 - injected by Salt
    owner = context.get("fileclient")
    if owner is None:
        return None
    cache = context.get(_CONTEXT_KEY)
    if not isinstance(cache, dict) or cache.get("owner") is not owner:
        cache = {"owner": owner, "entries": {}}
        context[_CONTEXT_KEY] = cache
    return cache["entries"]


def _cached(kind: str, inputs: Any, build: Any) -> Any:
    """`build()` once per state run and `inputs` (a JSON-able value: what the result is made
    from); each caller gets a copy of its own (a template or SLS that changed its copy changes no
    other). The result is kept pickled and each copy unpickled: for a model of 200 TLS sites x 10
    backends that is 1.4 ms a copy against 12 ms for copy.deepcopy, with the same types and values.
    Plainly `build()` outside a state run, or when JSON cannot key the inputs or pickle keep the
    result."""
    entries = _run_cache()
    try:
        key = kind + ":" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    except (TypeError, ValueError):
        entries = None
    if entries is None:
        return build()
    if key not in entries:
        built = build()
        try:
            entries[key] = pickle.dumps(built, pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            pass
        return built
    return pickle.loads(entries[key])


def tls_pem(path: str) -> str:
    """The PEM (certificate, chain, key) the formula writes at `path`, built from pillar on this
    minion. Only the TLS file template calls it, so that key material is never part of the
    model, state context or the job cache (file states keep show_changes off). Only the site that
    writes `path` is validated (proxytier_model.tls_pem): one model per file made a tier of N TLS
    sites build N models, and ask the mine N times, per apply."""
    pillar = __pillar__.get("proxytier", {})  # noqa: F821
    # the parameters of this state run (one fetch per run, not one per TLS file: _run_cache)
    return _lib("proxytier_model").tls_pem(pillar, path, params=_os_params(cache=True))


def bgp_password(name: str) -> str:
    """The TCP-MD5 password of BGP peer `name` (``peer<n>``, the model's bgp:peers:name) from pillar,
    validated (proxytier_bgp.password). Only bird.conf.jinja calls it, so that the password is never
    part of the model, state context or the job cache (the file states keep show_changes off)."""
    return _lib("proxytier_bgp").password(__pillar__.get("proxytier", {}).get("bgp"), name)  # noqa: F821


def bgp_files(params: dict[str, Any] | None = None) -> dict[str, str]:
    """Where vip_mode bgp puts BIRD's and the health gate's files and units on this node
    (proxytier_bgp.files), from `params` (default: this minion's ``proxytier.params``). keepalived.sls
    asks in VRRP mode, to take away what BGP mode left. CLI: ``salt proxy1 proxytier.bgp_files``."""
    return _lib("proxytier_bgp").files(params if params is not None else _os_params())


def monitoring(tplroot: str = "proxytier") -> dict[str, Any]:
    """The model of proxytier.monitoring for this Prometheus minion: pillar proxytier_monitoring over
    templates/monitoring/defaults.yaml, validated; targets from its nodes or the mine (proxytier_monitoring).
    CLI: ``salt monitor1 proxytier.monitoring``."""
    defaults = __salt__["cp.get_file_str"](f"salt://{tplroot}/templates/monitoring/defaults.yaml") or ""  # noqa: F821
    pillar = __pillar__.get("proxytier_monitoring")  # noqa: F821
    return _lib("proxytier_monitoring").build(pillar, defaults, __salt__["mine.get"])  # noqa: F821


def address(interface: str | None = None, family: int | str | None = None) -> list[str]:
    """This node's own addresses on the tier interface, VIPs left out (the mine function:
    ``mine_functions: {proxytier_address: {mine_function: proxytier.address}}``): its IPv4
    addresses first (``network.ip_addrs``), then its global IPv6 ones (``network.ip_addrs6``,
    without link-local fe80::/10), each as the kernel lists them. A mine member's address is the
    first IPv4 one inside the allowed networks and its address6 the first IPv6 one
    (proxytier_members). family: 4 or 6 publishes that family only (``{mine_function:
    proxytier.address, family: 4}``); default both."""
    import ipaddress

    if family not in (None, 4, 6, "4", "6"):
        raise _lib("proxytier_schema").ProxytierError(f"proxytier.address: family {family!r}: use 4, 6 or none")
    pillar = _pillar()
    iface = interface or pillar.get("interface") or _lib("proxytier_model").DEFAULTS["interface"]
    vip_address = _lib("proxytier_schema").vip_address
    vips = {vip_address(v.get("address")) for v in pillar.get("vips") or [] if isinstance(v, dict)}
    pool = pillar.get("vip_pool") if isinstance(pillar.get("vip_pool"), dict) else {}
    vips |= {vip_address(a) for a in [*(pool.get("addresses") or []), *(pool.get("addresses6") or [])]}
    found = []
    if family in (None, 4, "4"):
        found += __salt__["network.ip_addrs"](interface=iface)  # noqa: F821
    if family in (None, 6, "6"):
        found += [a for a in __salt__["network.ip_addrs6"](interface=iface)  # noqa: F821
                  if not ipaddress.ip_address(a.split("%")[0]).is_link_local]
    return [ip for ip in found if vip_address(ip) not in vips]


def reinstall() -> dict[str, Any]:
    """Reinstall the tier's packages (nginx, HAProxy, keepalived) as an upgrade would: their
    maintainer scripts restart the daemons. CLI: ``salt proxy1 proxytier.reinstall``."""
    pkgs = [params()["pkgs"][k] for k in ("nginx", "haproxy", "keepalived")]
    return __salt__["pkg.install"](pkgs=pkgs, reinstall=True)  # noqa: F821


def member_state(member: str, state: str) -> dict[str, str]:
    """On this node's HAProxy, set member's nginx to ready/drain/maint in every backend.

    CLI: ``salt 'proxy*' proxytier.member_state proxy2 drain``."""
    runtime = _lib("proxytier_runtime")
    m = model()
    sock = m["params"].get("haproxy_admin_socket", "/run/haproxy/admin.sock")
    done = runtime.set_member_state(m, member, state, lambda cmd: runtime.unix_command(sock, cmd))
    # persisted at once: a HAProxy that restarts (killed, node rebooted) starts from the state set last,
    # not from the one saved at the last reload. Found in the lab: a rolling change saved each node's own
    # nginx as drained (its apply reloads HAProxy while it is drained), the later "ready" lived only at
    # run time, and after a restart HAProxy kept the node's own nginx drained (re-saved at every reload)
    _save_server_states(runtime, m)
    return done


def _worker_pid(runtime: Any, sock: str) -> str | None:
    try:
        info = runtime.unix_command(sock, "show info")
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Pid:")), None)


def _write_server_states(runtime: Any, m: dict[str, Any], text: str) -> tuple[str, list[str]]:
    """Write `show servers state` output `text` (less the servers the configuration changes:
    runtime.state_to_keep) atomically to HAProxy's server-state-file -> (what was kept, dropped)."""
    keep, dropped = runtime.state_to_keep(text, m)
    path = m["params"]["haproxy_state_file"]
    with open(path + ".tmp", "w") as f:
        f.write(keep)
    os.replace(path + ".tmp", path)
    return keep, dropped


def _save_server_states(runtime: Any, m: dict[str, Any]) -> None:
    """The running HAProxy's server states to its server-state-file (OSError if it does not answer)."""
    _write_server_states(runtime, m, runtime.unix_command(m["params"]["haproxy_admin_socket"], "show servers state"))


def haproxy_save_state() -> dict[str, Any]:
    """Before HAProxy reloads a changed configuration: save the server states set at run time
    (drain, maint, weights) to HAProxy's server-state-file, so that the new process starts from
    them, except for servers whose address or port the new configuration changes or removes
    (those start from the configuration: a saved port would win over the new one, haproxy #1412);
    note the running worker's pid for ``haproxy_reloaded``. A stopped HAProxy saves nothing."""
    runtime = _lib("proxytier_runtime")
    m = model()
    p = m["params"]
    pid_file = p["haproxy_state_file"] + ".worker-pid"
    try:
        text = runtime.unix_command(p["haproxy_admin_socket"], "show servers state")
    except OSError as exc:
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        return {"running": False, "why": str(exc)}
    keep, dropped = _write_server_states(runtime, m, text)
    pid = _worker_pid(runtime, p["haproxy_admin_socket"]) or ""
    with open(pid_file, "w") as f:
        f.write(pid)
    return {"running": True, "saved": len(keep.splitlines()) - 2, "started_from_config": dropped, "worker": pid}


def haproxy_reloaded(timeout: float = 15.0) -> dict[str, Any]:
    """After HAProxy's reload: succeed once a new worker answers AND its live servers (address and
    port) equal the configuration; fail naming the difference. Debian's reload exits 0 even when
    the new process cannot load the configuration and the old worker keeps serving."""
    runtime = _lib("proxytier_runtime")
    m = model()
    sock, pid_file = m["params"]["haproxy_admin_socket"], m["params"]["haproxy_state_file"] + ".worker-pid"
    try:
        with open(pid_file) as f:
            old = f.read().strip() or None
    except FileNotFoundError:
        old = None
    pid: list[str | None] = [None]

    def new_worker() -> bool:
        pid[0] = _worker_pid(runtime, sock)
        return pid[0] is not None and pid[0] != old

    error = _lib("proxytier_schema").ProxytierError
    if not runtime.wait_until(new_worker, timeout, step=0.2):
        if pid[0] is None:
            raise error(f"HAProxy does not answer on {sock} after {timeout:.0f} s (journalctl -u haproxy)")
        raise error(f"HAProxy did not load the new configuration: worker {pid[0]} still runs the old one "
                    "(journalctl -u haproxy says why)")
    diffs = runtime.live_differences(runtime.unix_command(sock, "show servers state"), m)
    if diffs:
        raise error("HAProxy's live servers differ from its configuration: " + "; ".join(diffs))
    return {"worker": f"{old or '-'} -> {pid[0]}", "servers": "as configured"}


def verify(timeout: float = 30.0, vips: bool = True, vrrp: bool = True) -> dict[str, Any]:
    """Is this node serving? nginx answers its health path on every site, HAProxy its monitor
    URI, HAProxy sees this node's nginx UP, keepalived runs, and (unless vips=False, for a node
    whose VIPs were handed over) the node holds the VIPs it owns. vrrp=False (a joining node whose
    keepalived is held down) checks neither keepalived nor VIPs. Waits up to `timeout` seconds,
    then fails naming what is still wrong. With vip_mode bgp, instead of keepalived and VIPs: BIRD
    and the BGP gate run and the gate announces (proxytier_runtime.bgp_checks).
    CLI: ``salt proxy1 proxytier.verify``."""
    runtime = _lib("proxytier_runtime")
    m = model()
    sock = m["params"].get("haproxy_stats_socket", "/run/haproxy/stats.sock")
    keepalived = m["params"].get("services", {}).get("keepalived", "keepalived")
    bgp = "bgp" in m
    checks = runtime.serving_checks(
        m,
        lambda cmd: runtime.unix_command(sock, cmd),
        (lambda: bool(__salt__["service.status"](keepalived))) if vrrp and not bgp else None,  # noqa: F821
        _held_addresses,
        vips=vips and vrrp and not bgp,
        guarded=_guarded,
    )
    if bgp:
        gate_state = _lib("proxytier_handover").gate_state
        checks.update(runtime.bgp_checks(m, lambda unit: bool(__salt__["service.status"](unit)),  # noqa: F821
                                         lambda: gate_state(m)))
    return runtime.wait_all(m["node"]["id"], checks, timeout)


def _stop_services(names: list[str], disable: bool) -> dict[str, str]:
    """Stop (and disable) each unit that exists on this node; {unit: what was done}."""
    done = {}
    available = __salt__["service.available"]  # noqa: F821
    for name in names:
        if not available(name):
            done[name] = "not installed"
            continue
        if __salt__["service.status"](name) and not __salt__["service.stop"](name):  # noqa: F821
            raise _lib("proxytier_schema").ProxytierError(f"{name} does not stop (journalctl -u {name})")
        if disable and not __salt__["service.disable"](name):  # noqa: F821
            raise _lib("proxytier_schema").ProxytierError(f"{name} cannot be disabled (systemctl disable {name})")
        done[name] = "stopped and disabled" if disable else "stopped"
    return done


def stop_vrrp() -> dict[str, str]:
    """Stop keepalived on this node if it is installed and runs; {service: what was done}.

    A node must not run keepalived while its peers do not send it VRRP adverts (they do only while
    their own model has it as a member): a keepalived that hears no advert takes every VIP it
    backs up, and the LAN's ARP caches follow it. orch/join.sls calls this before the node's first
    apply and starts keepalived last; orch/leave.sls calls it after the node has handed its VIPs
    over and before its peers drop it.
    CLI: ``salt proxy4 proxytier.stop_vrrp``."""
    return _stop_services([params()["services"]["keepalived"]], disable=False)


def retire() -> dict[str, str]:
    """Take this node out of service for good: stop and disable keepalived first (its VIPs must
    already be handed over: ``proxytier.handover NODE release``), then HAProxy, nginx and the
    exporter; {unit: what was done}. Where the formula ran vip_mode bgp (the health gate's
    configuration exists; the node has withdrawn: ``proxytier.handover NODE release``), first the
    gate stops and is disabled, the addresses and routes it leaves go (``proxytier_bgp_gate.py
    --retire``: "bgp addresses" in the result) and BIRD stops and is disabled (its sessions close
    with a Cease, so the routers drop the node at once); a BIRD the formula did not run is left alone.
    Run by orch/leave.sls after the other nodes dropped this one and Prometheus stopped scraping it.
    Raises ProxytierError naming a unit that does not stop, or the gate's --retire failing.
    CLI: ``salt proxy4 proxytier.retire``."""
    import os

    p = params()
    done: dict[str, str] = {}
    off = bgp_files(p)
    if os.path.exists(off["gate_config"]):
        done.update(_stop_services(["proxytier-bgp-gate"], disable=True))
        _run([p.get("python3", "/usr/bin/python3"), off["gate_script"], "--retire", off["gate_config"]])
        done["bgp addresses"] = "removed"
        done.update(_stop_services([off["service"]], disable=True))
    units = [p["services"][k] for k in ("keepalived", "haproxy", "nginx")]
    units += [p["exporter_service"]]
    done.update(_stop_services(units, disable=True))
    return done


def _held_addresses() -> set[str]:
    """The addresses this node holds, both families (IPv6 VIPs keepalived adds have DAD off, so
    they are never tentative; a /128 one is "deprecated" and still held)."""
    found = __salt__["network.ip_addrs"](include_loopback=False) + __salt__["network.ip_addrs6"]()  # noqa: F821
    return {str(_ip_address(a)) for a in found if _ip_address(a) is not None}


def _ip_address(text: str) -> Any:
    import ipaddress

    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _guarded() -> list[str]:
    """VIPs a handover SYN guard on this node still holds (a handover running, or one killed
    midway whose guard has not expired yet)."""
    handover_lib = _lib("proxytier_handover")
    listing = _run(["nft", "-j", "list", "table", handover_lib.GUARD_FAMILY, handover_lib.GUARD_TABLE], check=False)
    return handover_lib.guarded(listing)


def _run(cmd: list[str], input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        error = _lib("proxytier_schema").ProxytierError
        raise error(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def handover(node: str, action: str, timeout: float = 5.0, drain: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Move `node`'s VIPs to its peers (action=release) or back to it (action=reclaim) without
    failing a request. Run it on every member at once (each does its part):

        salt 'proxy*' proxytier.handover proxy2 release
        salt 'proxy*' proxytier.handover proxy2 reclaim

    release: `node` guards the VIPs it holds, waits up to `drain` s for their connections to
    finish, then holds its priority down; fails if a peer has not taken them in `timeout` s
    (and then lets go of the hold: no peer is there to serve them).
    reclaim: the peers holding `node`'s own VIPs guard them and wait for their connections to
    finish; `node` waits until it sees the guard, then lifts its hold and takes its VIPs back.
    `drain` defaults to 2 s (new connections to the VIPs are held back meanwhile).
    With vip_mode bgp: release makes the health gate's hold file on `node`: first a graceful shutdown
    (bgp:graceful_shutdown: the gate announces with GRACEFUL_SHUTDOWN, RFC 8326) until the node's
    connections have finished for a second or `drain` s (default bgp:drain, 30) have passed, then a
    withdraw (BIRD's sessions stay up; the addresses stay on the node, which keeps serving); reclaim
    removes it and waits for the gate to announce again; the other members do nothing.
    A VRRP reclaim's members begin together, START_DELAY (4 s) after the job's publish time (its JID,
    which Salt passes as ``__pub_jid``): their clocks must be in step (NTP)."""
    lib = _lib("proxytier_handover")
    unknown = sorted(k for k in kwargs if not k.startswith("__pub_"))
    if unknown:
        raise lib.ProxytierError(
            f"proxytier.handover: unknown argument(s) {', '.join(unknown)}: use node, action, timeout, drain"
        )
    start = lib.start_at(kwargs.get("__pub_jid"))
    m = model()

    def local_vips() -> set[str]:
        return _held_addresses() & set(m["vips"])

    def busy(vips: list[str]) -> int:
        text = ""
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            if os.path.exists(name):  # no tcp6 on a kernel booted with ipv6.disable=1
                with open(name) as f:
                    text += f.read()
        return lib.busy_connections(text, vips)

    return lib.handover(m, node, action, _run, local_vips, busy, timeout=timeout, drain=drain, start=start)
