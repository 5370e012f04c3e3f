"""Panel factories over grafana-foundation-sdk builders: every panel reads Prometheus through
the dashboard's `${datasource}` variable and carries a description of what it shows."""

from __future__ import annotations

from grafana_foundation_sdk.builders import heatmap, stat, timeseries, xychart
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.builders.heatmap import CellValues, HeatmapColorOptions, RowsHeatmapOptions, YAxisConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.common import (
    BigValueTextMode,
    GraphThresholdsStyleMode,
    HeatmapCellLayout,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.xychart import SeriesMapping, XYShowMode

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TOKENS_PER_SECOND = "suffix: tok/s"
TIMES = "suffix:x"
REF_IDS = "ABCDEFGH"

Query = tuple[str, str]  # (PromQL, legend format)


def _targets(queries: list[Query], *, instant: bool = False) -> list[Dataquery]:
    targets = []
    for ref_id, (expr, legend) in zip(REF_IDS, queries, strict=False):
        target = Dataquery().ref_id(ref_id).datasource(DATASOURCE).expr(expr).legend_format(legend)
        targets.append(target.instant() if instant else target.range())
    return targets


def _legend() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .calcs(["mean", "lastNotNull"])
    )


def _threshold_line(value: float) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color="red"), Threshold(value=value, color="green")])
    )


def time_series(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    span: int = 12,
    min_value: float | None = 0,
    max_value: float | None = None,
    threshold_line: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(8)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend())
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if threshold_line is not None:
        panel = panel.thresholds(_threshold_line(threshold_line)).thresholds_style(
            GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
        )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def histogram_heatmap(title: str, description: str, expr: str, *, span: int = 12) -> heatmap.Panel:
    """Heatmap of a Prometheus histogram's bucket rates over time (observations/s per bucket)."""
    target = (
        Dataquery()
        .ref_id("A")
        .datasource(DATASOURCE)
        .expr(expr)
        .legend_format("{{le}}")
        .format(PromQueryFormat.HEATMAP)
        .range()
    )
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(span)
        .height(8)
        .calculate(False)
        .rows_frame(RowsHeatmapOptions().layout(HeatmapCellLayout.LE).value("steps/s"))
        .y_axis(YAxisConfig().unit("none").decimals(0))
        .color(HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges").scale(HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64))
        .cell_values(CellValues().unit("none"))
        .with_target(target)
    )


def label_stat(title: str, description: str, query: Query, *, span: int = 6) -> stat.Panel:
    """Shows the legend (a label value, e.g. the γ policy) of an info-style series."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(span)
        .height(8)
        .text_mode(BigValueTextMode.NAME)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    for target in _targets([query], instant=True):
        panel = panel.with_target(target)
    return panel


def scatter(
    title: str, description: str, x: Query, y: Query, *, x_unit: str, y_unit: str, span: int = 12
) -> xychart.Panel:
    """XY scatter pairing two single-series queries by timestamp: one point per time step.
    Query A (joined first) is the x axis, query B the y axis (the chart's auto mapping)."""
    panel = (
        xychart.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(span)
        .height(9)
        .with_transformation(DataTransformerConfig(id_val="joinByField", options={"byField": "Time", "mode": "outer"}))
        .mapping(SeriesMapping.AUTO)
        .show(XYShowMode.POINTS)
        .point_size(xychart.XychartFieldConfigPointSize().fixed(6))
        .legend(VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM))
        .override_by_name(x[1], [DynamicConfigValue(id_val="unit", value=x_unit)])
        .unit(y_unit)
    )
    for target in _targets([x, y]):
        panel = panel.with_target(target)
    return panel
