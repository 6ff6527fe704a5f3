"""Which HAProxy field becomes which metric: the tables of HAProxy 2.6's built-in Prometheus exporter.

HAProxy's own exporter (`http-request use-service prometheus-exporter`, addons/promex/service-prometheus.c
in HAProxy 2.6) publishes one metric per `show info` field and per `show stat` field, under a fixed name,
type and set of objects (frontends, backends, servers). These tables repeat that mapping, field for field,
so that proxytier's exposition carries the same names, types, labels and units from the same data:

- `STAT_FIELDS`: `show stat` column -> `haproxy_<object>_<name>`, for the objects HAProxy publishes it on
  (labels `proxy`, plus `server` for servers). Times that `show stat` gives in milliseconds are published
  in seconds, as HAProxy's exporter does (`divisor`). Fields HAProxy publishes only for HTTP proxies
  (`http_only`) are left out for a proxy whose `mode` column is not `http`.
- `INFO_FIELDS`: `show info` key -> `haproxy_process_<name>`, no labels.

Status-like fields (frontend/backend/server `status`, server `check_status`, `check_code`,
`check_duration`, backend `agg_server_status` / `agg_check_status`, the `http_responses_total` family)
need a rule rather than a column copy; `haproxy.py` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

FRONTEND, BACKEND, SERVER = "frontend", "backend", "server"
_OBJECTS = {"f": FRONTEND, "b": BACKEND, "s": SERVER}
MS = 1000.0  # milliseconds per second: `show stat` times are divided by it


@dataclass(frozen=True)
class StatField:
    """One `show stat` column published as `haproxy_<object>_<name>` on `objects`."""

    column: str
    name: str
    kind: str  # "counter" or "gauge", HAProxy's exporter's type
    objects: tuple[str, ...]
    help: str
    divisor: float = 1.0
    http_only: bool = False


@dataclass(frozen=True)
class InfoField:
    """One `show info` key published as `haproxy_process_<name>`. `required` keys must be in every answer
    (they always are on HAProxy 2.6); the others are published when the answer has them (HAProxy leaves
    out e.g. ZlibMemUsage when built without zlib)."""

    key: str
    name: str
    kind: str  # "counter", "gauge" or "untyped" (a counter whose name has no _total)
    help: str
    required: bool = False


def _stat(column: str, name: str, kind: str, objects: str, text: str, divisor: float = 1.0,
          http_only: bool = False) -> StatField:
    return StatField(column, name, kind, tuple(_OBJECTS[o] for o in objects),
                     f"{text} (show stat field {column}).", divisor, http_only)


C, G = "counter", "gauge"

# In the order of HAProxy's `show stat` columns. objects: f frontend, b backend, s server.
STAT_FIELDS: tuple[StatField, ...] = (
    _stat("qcur", "current_queue", G, "bs", "Requests waiting in the queue"),
    _stat("qmax", "max_queue", G, "bs", "Highest queue length seen"),
    _stat("scur", "current_sessions", G, "fbs", "Current sessions"),
    _stat("smax", "max_sessions", G, "fbs", "Highest number of concurrent sessions seen"),
    _stat("slim", "limit_sessions", G, "fbs", "Configured session limit (maxconn)"),
    _stat("stot", "sessions_total", C, "fbs", "Sessions"),
    _stat("bin", "bytes_in_total", C, "fbs", "Request bytes"),
    _stat("bout", "bytes_out_total", C, "fbs", "Response bytes"),
    _stat("dreq", "requests_denied_total", C, "fb", "Requests denied by rules"),
    _stat("dresp", "responses_denied_total", C, "fbs", "Responses denied by rules"),
    _stat("ereq", "request_errors_total", C, "f", "Request errors"),
    _stat("econ", "connection_errors_total", C, "bs", "Failed connections to servers"),
    _stat("eresp", "response_errors_total", C, "bs", "Invalid responses from servers"),
    _stat("wretr", "retry_warnings_total", C, "bs", "Connection retries"),
    _stat("wredis", "redispatch_warnings_total", C, "bs", "Redispatches to another server"),
    _stat("weight", "weight", G, "bs", "Effective weight (a backend: sum of its active servers')"),
    _stat("act", "active_servers", G, "b", "Active servers UP with a non-zero weight"),
    _stat("bck", "backup_servers", G, "b", "Backup servers UP with a non-zero weight"),
    _stat("chkfail", "check_failures_total", C, "s", "Failed health checks"),
    _stat("chkdown", "check_up_down_total", C, "bs", "UP to DOWN transitions"),
    _stat("lastchg", "check_last_change_seconds", G, "bs", "Seconds since the last UP/DOWN change"),
    _stat("downtime", "downtime_seconds_total", C, "bs", "Seconds spent DOWN"),
    _stat("qlimit", "queue_limit", G, "s", "Configured queue limit (maxqueue)"),
    _stat("throttle", "current_throttle", G, "s", "Slowstart throttle, percent"),
    _stat("lbtot", "loadbalanced_total", C, "bs", "Times chosen by load balancing"),
    _stat("rate_lim", "limit_session_rate", G, "f", "Configured limit of new sessions per second"),
    _stat("rate_max", "max_session_rate", G, "fbs", "Highest number of new sessions per second seen"),
    _stat("req_rate_max", "http_requests_rate_max", G, "f", "Highest number of HTTP requests per second seen",
          http_only=True),
    _stat("req_tot", "http_requests_total", C, "fb", "HTTP requests", http_only=True),
    _stat("cli_abrt", "client_aborts_total", C, "bs", "Transfers aborted by the client"),
    _stat("srv_abrt", "server_aborts_total", C, "bs", "Transfers aborted by the server"),
    _stat("comp_in", "http_comp_bytes_in_total", C, "fb", "Bytes fed to the compressor", http_only=True),
    _stat("comp_out", "http_comp_bytes_out_total", C, "fb", "Bytes the compressor produced", http_only=True),
    _stat("comp_byp", "http_comp_bytes_bypassed_total", C, "fb", "Bytes that bypassed the compressor",
          http_only=True),
    _stat("comp_rsp", "http_comp_responses_total", C, "fb", "HTTP responses compressed", http_only=True),
    _stat("lastsess", "last_session_seconds", G, "bs", "Seconds since the last session (-1: none yet)"),
    _stat("qtime", "queue_time_average_seconds", G, "bs", "Average queue time of the last 1024 requests, "
          "seconds", divisor=MS),
    _stat("ctime", "connect_time_average_seconds", G, "bs", "Average connect time of the last 1024 requests, "
          "seconds", divisor=MS),
    _stat("rtime", "response_time_average_seconds", G, "bs", "Average response time of the last 1024 "
          "requests, seconds", divisor=MS),
    _stat("ttime", "total_time_average_seconds", G, "bs", "Average total time of the last 1024 requests, "
          "seconds", divisor=MS),
    _stat("conn_rate_max", "connections_rate_max", G, "f", "Highest number of connections per second seen"),
    _stat("conn_tot", "connections_total", C, "f", "Connections"),
    _stat("intercepted", "intercepted_requests_total", C, "f", "Requests answered by HAProxy itself",
          http_only=True),
    _stat("dcon", "denied_connections_total", C, "f", "Connections denied by tcp-request connection rules"),
    _stat("dses", "denied_sessions_total", C, "f", "Sessions denied by tcp-request session rules"),
    _stat("wrew", "failed_header_rewriting_total", C, "fbs", "Failed header rewrites"),
    _stat("connect", "connection_attempts_total", C, "bs", "Connection attempts to servers"),
    _stat("reuse", "connection_reuses_total", C, "bs", "Reused server connections"),
    _stat("cache_lookups", "http_cache_lookups_total", C, "fb", "HTTP cache lookups", http_only=True),
    _stat("cache_hits", "http_cache_hits_total", C, "fb", "HTTP cache hits", http_only=True),
    _stat("srv_icur", "idle_connections_current", G, "s", "Idle connections ready for reuse"),
    _stat("src_ilim", "idle_connections_limit", G, "s", "Configured limit of idle connections"),
    _stat("qtime_max", "max_queue_time_seconds", G, "bs", "Highest queue time seen, seconds", divisor=MS),
    _stat("ctime_max", "max_connect_time_seconds", G, "bs", "Highest connect time seen, seconds", divisor=MS),
    _stat("rtime_max", "max_response_time_seconds", G, "bs", "Highest response time seen, seconds", divisor=MS),
    _stat("ttime_max", "max_total_time_seconds", G, "bs", "Highest total time seen, seconds", divisor=MS),
    _stat("eint", "internal_errors_total", C, "fbs", "Internal errors"),
    _stat("idle_conn_cur", "unsafe_idle_connections_current", G, "s", "Unsafe idle connections"),
    _stat("safe_conn_cur", "safe_idle_connections_current", G, "s", "Safe idle connections"),
    _stat("used_conn_cur", "used_connections_current", G, "s", "Connections in use"),
    _stat("need_conn_est", "need_connections_current", G, "s", "Estimated connections needed"),
    _stat("uweight", "uweight", G, "bs", "Configured (user) weight (a backend: sum of its active servers')"),
)

# `show stat` columns behind the metrics built by rule in haproxy.py.
RULE_COLUMNS = ("status", "check_status", "check_code", "check_duration", "mode",
                "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


def _info(key: str, name: str, kind: str, text: str, required: bool = False) -> InfoField:
    return InfoField(key, name, kind, f"{text} (show info field {key}).", required)


# In the order of HAProxy's `show info`. Name, Version (build_info) and the rest are read by haproxy.py.
INFO_FIELDS: tuple[InfoField, ...] = (
    _info("Nbthread", "nbthread", G, "Threads", required=True),
    _info("Nbproc", "nbproc", G, "Processes (always 1 since HAProxy 2.5)"),
    _info("Process_num", "relative_process_id", G, "Relative process number"),
    _info("Uptime_sec", "uptime_seconds", G, "Seconds since the process started", required=True),
    _info("Start_time_sec", "start_time_seconds", G, "Start time of the process, Unix seconds", required=True),
    _info("Memmax_bytes", "max_memory_bytes", G, "Memory limit (-m), bytes; 0 is none"),
    _info("PoolAlloc_bytes", "pool_allocated_bytes", G, "Bytes allocated in memory pools"),
    _info("PoolUsed_bytes", "pool_used_bytes", G, "Bytes used in memory pools"),
    _info("PoolFailed", "pool_failures_total", C, "Failed memory pool allocations"),
    _info("Ulimit-n", "max_fds", G, "File descriptor limit"),
    _info("Maxsock", "max_sockets", G, "Socket limit"),
    _info("Maxconn", "max_connections", G, "Configured maxconn", required=True),
    _info("Hard_maxconn", "hard_max_connections", G, "Hard connection limit"),
    _info("CurrConns", "current_connections", G, "Current connections", required=True),
    _info("CumConns", "connections_total", C, "Connections accepted", required=True),
    _info("CumReq", "requests_total", C, "HTTP requests", required=True),
    _info("MaxSslConns", "max_ssl_connections", G, "Configured limit of SSL connections"),
    _info("CurrSslConns", "current_ssl_connections", G, "Current SSL connections"),
    _info("CumSslConns", "ssl_connections_total", C, "SSL connections"),
    _info("Maxpipes", "max_pipes", G, "Configured limit of pipes"),
    _info("PipesUsed", "pipes_used_total", C, "Pipes in use (a gauge HAProxy's exporter types as counter)"),
    _info("PipesFree", "pipes_free_total", C, "Pipes free (a gauge HAProxy's exporter types as counter)"),
    _info("ConnRate", "current_connection_rate", G, "Connections in the last second"),
    _info("ConnRateLimit", "limit_connection_rate", G, "Configured limit of connections per second"),
    _info("MaxConnRate", "max_connection_rate", G, "Highest number of connections per second seen"),
    _info("SessRate", "current_session_rate", G, "Sessions in the last second"),
    _info("SessRateLimit", "limit_session_rate", G, "Configured limit of sessions per second"),
    _info("MaxSessRate", "max_session_rate", G, "Highest number of sessions per second seen"),
    _info("SslRate", "current_ssl_rate", G, "SSL sessions in the last second"),
    _info("SslRateLimit", "limit_ssl_rate", G, "Configured limit of SSL sessions per second"),
    _info("MaxSslRate", "max_ssl_rate", G, "Highest number of SSL sessions per second seen"),
    _info("SslFrontendKeyRate", "current_frontend_ssl_key_rate", G, "Frontend SSL key computations in the "
          "last second"),
    _info("SslFrontendMaxKeyRate", "max_frontend_ssl_key_rate", G, "Highest frontend SSL key computations "
          "per second seen"),
    _info("SslFrontendSessionReuse_pct", "frontend_ssl_reuse", G, "Frontend SSL session reuse, percent"),
    _info("SslBackendKeyRate", "current_backend_ssl_key_rate", G, "Backend SSL key computations in the last "
          "second"),
    _info("SslBackendMaxKeyRate", "max_backend_ssl_key_rate", G, "Highest backend SSL key computations per "
          "second seen"),
    _info("SslCacheLookups", "ssl_cache_lookups_total", C, "SSL session cache lookups"),
    _info("SslCacheMisses", "ssl_cache_misses_total", C, "SSL session cache misses"),
    _info("CompressBpsIn", "http_comp_bytes_in_total", C, "Compressor input in the last second, bytes (a "
          "rate HAProxy's exporter types as counter)"),
    _info("CompressBpsOut", "http_comp_bytes_out_total", C, "Compressor output in the last second, bytes (a "
          "rate HAProxy's exporter types as counter)"),
    _info("CompressBpsRateLim", "limit_http_comp", G, "Configured compression rate limit"),
    _info("ZlibMemUsage", "current_zlib_memory", G, "Memory used by zlib, bytes"),
    _info("MaxZlibMemUsage", "max_zlib_memory", G, "Configured zlib memory limit, bytes"),
    _info("Tasks", "current_tasks", G, "Tasks"),
    _info("Run_queue", "current_run_queue", G, "Tasks in the run queue"),
    _info("Idle_pct", "idle_time_percent", G, "Idle time, percent"),
    _info("Stopping", "stopping", G, "1 while the process is stopping (old process after a reload)",
          required=True),
    _info("Jobs", "jobs", G, "Active jobs (listeners, sessions, ...)", required=True),
    _info("Unstoppable Jobs", "unstoppable_jobs", G, "Jobs that a stopping process still waits for"),
    _info("Listeners", "listeners", G, "Listeners"),
    _info("ActivePeers", "active_peers", G, "Active peers"),
    _info("ConnectedPeers", "connected_peers", G, "Connected peers"),
    _info("DroppedLogs", "dropped_logs_total", C, "Log messages dropped", required=True),
    _info("BusyPolling", "busy_polling_enabled", G, "1 if busy polling is on"),
    # HAProxy's exporter types this one counter without the _total suffix, which prometheus_client cannot
    # write for a counter: it keeps its name and is exposed untyped.
    _info("FailedResolutions", "failed_resolutions", "untyped", "Failed DNS resolutions"),
    _info("TotalBytesOut", "bytes_out_total", C, "Bytes sent"),
    _info("TotalSplicdedBytesOut", "spliced_bytes_out_total", C, "Bytes sent by splicing"),
    _info("BytesOutRate", "bytes_out_rate", G, "Bytes sent in the last second"),
    _info("CumRecvLogs", "recv_logs_total", C, "Log messages received by log-forward"),
)

# Health-check results HAProxy's exporter lists in `haproxy_server_check_status` and
# `haproxy_backend_agg_check_status` (the check statuses with a result, in HAProxy's order); `show stat`
# writes them in check_status, prefixed with "* " while a check runs.
CHECK_STATUSES = ("HANA", "SOCKERR", "L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7TOUT", "L7RSP",
                  "L7OK", "L7OKC", "L7STS", "PROCERR", "PROCTOUT", "PROCOK")
