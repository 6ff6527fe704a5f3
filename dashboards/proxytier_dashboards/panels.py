"""Small helpers over grafana-foundation-sdk builders: every panel gets the datasource variable, a unit, a
description and Prometheus targets, so the dashboards' modules only say what to show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The datasource provisioned by provisioning/datasources/proxytier.yml: the variable's default.
PROVISIONED_DATASOURCE = ("Prometheus (proxytier)", "proxytier-prometheus")
# Label matchers every query carries: the tier (job) and the selected node(s) (instance).
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _targets(queries: Sequence[Query]) -> list[cogbuilder.Builder[object]]:
    return [
        prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(chr(ord("A") + i))
        for i, q in enumerate(queries)
    ]


def _steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps]
    )


def mapping(values: dict[int, tuple[str, str]]) -> list[model.ValueMapping]:
    """Value mappings {value: (text, color)} for state-set codes."""
    return [model.ValueMap(options={str(v): model.ValueMappingResult(text=t, color=c, index=i)
                                    for i, (v, (t, c)) in enumerate(values.items())})]


def graph(title: str, description: str, unit: str, queries: Sequence[Query], *, width: int = 12,
          height: int = 8, stack: bool = False, minimum: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .targets(_targets(queries)).span(width).height(height).fill_opacity(10)
             .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"])))
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if minimum is not None:
        panel = panel.min(minimum)
    return panel


def number(title: str, description: str, unit: str, queries: Sequence[Query], *,
           steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
           mappings: list[model.ValueMapping] | None = None, width: int = 6, height: int = 6) -> stat.Panel:
    panel = (stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .targets(_targets(queries)).span(width).height(height).thresholds(_steps(*steps))
             .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def states(title: str, description: str, queries: Sequence[Query], mappings: list[model.ValueMapping], *,
           width: int = 24, height: int = 8) -> statetimeline.Panel:
    return (statetimeline.Panel().title(title).description(description).unit("none").datasource(DATASOURCE)
            .targets(_targets(queries)).span(width).height(height).mappings(mappings)
            .show_value(common.VisibilityMode.NEVER).merge_values(True).row_height(0.8).line_width(0).fill_opacity(70)
            .thresholds(_steps((None, "text"))))


def variables(*, multi_instance: bool) -> list[cogbuilder.Builder[model.VariableModel]]:
    """datasource, job (the tier) and instance (node) variables; `multi_instance` for the tier view."""
    instance = (dashboard.QueryVariable("instance").label("Node").datasource(DATASOURCE)
                .description("Exporter target (one per proxy node).")
                .query('label_values(proxytier_build_info{job=~"$job"}, instance)')
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))
    if multi_instance:
        instance = instance.multi(True).include_all(True).all_value(".+")
    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        .description("Prometheus that scrapes the proxytier exporters.")
        .current(model.VariableOption(text=PROVISIONED_DATASOURCE[0], value=PROVISIONED_DATASOURCE[1])),
        dashboard.QueryVariable("job").label("Tier (job)").datasource(DATASOURCE)
        .description("Prometheus job of the tier's exporters.")
        .query("label_values(proxytier_build_info, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC),
        instance,
    ]


def new_dashboard(uid: str, title: str, description: str, *, multi_instance: bool) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(["proxytier"])
            .time("now-1h", "now").refresh("30s").timezone("browser").editable()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .variables(variables(multi_instance=multi_instance))
            .link(dashboard.DashboardLink("proxytier").type(model.DashboardLinkType.DASHBOARDS)
                  .tags(["proxytier"]).as_dropdown(True).include_vars(True).keep_time(True)))


# State-set codes shown by the state timelines (value mappings below).
VRRP_CODES = {3: ("MASTER", "green"), 2: ("BACKUP", "blue"), 1: ("FAULT", "red"), 0: ("INIT/STOP/UNKNOWN", "orange")}
SERVER_CODES = {4: ("UP", "green"), 3: ("DRAIN", "yellow"), 2: ("NOLB", "purple"), 1: ("MAINT", "blue"),
                0: ("DOWN", "red")}
# vip_mode bgp: BIRD's BGP and BFD states (proxytier_bgp_session_state, proxytier_bgp_bfd_session_state), and the
# gate's announcement as announced + 2 x held
BGP_CODES = {6: ("Established", "green"), 5: ("OpenConfirm", "yellow"), 4: ("OpenSent", "yellow"),
             3: ("Active", "orange"), 2: ("Connect", "orange"), 1: ("Idle", "red"), 0: ("Down/Close/Passive", "red")}
BFD_CODES = {3: ("Up", "green"), 2: ("Init", "yellow"), 1: ("Down", "red"), 0: ("AdminDown", "text")}
GATE_CODES = {1: ("announced", "green"), 0: ("withdrawn", "red"), 2: ("held", "blue"),
              3: ("graceful shutdown", "orange")}
GATE_CODE = f"proxytier_bgp_gate_announced{{{SEL}}} + 2 * proxytier_bgp_gate_held{{{SEL}}}"


def state_code(metric: str, codes: dict[int, tuple[str, str]], by: str, extra: str = "") -> str:
    """PromQL turning a 0/1 state-set into one numeric code per object: sum of code x series(state).
    States without a code (or code 0) count 0."""
    matchers = f"{SEL}{', ' + extra if extra else ''}"
    terms = [f"{code} * sum by ({by}) ({metric}{{{matchers}, state=\"{text.split('/')[0]}\"}})"
             for code, (text, _color) in codes.items() if code]
    return "\n+ ".join(terms)
