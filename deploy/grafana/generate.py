"""Generate the Grafana dashboard JSON under deploy/grafana/dashboards/ with grafana-foundation-sdk.

    python deploy/grafana/generate.py            # rewrite the committed JSON
    python deploy/grafana/generate.py --out DIR  # write elsewhere (the tests compare)

Edit the panels here, never the JSON: tests/deploy checks the JSON is what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, VariableOption, VariableRefresh, VariableSort

import queries as q
from panels import DATASOURCE, TIMES, TOKENS_PER_SECOND, histogram_heatmap, label_stat, scatter, time_series

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
CONTROLLER_NOTE = " Empty until the γ controller exports specgate_* series."


def label_variable(name: str, label: str, query: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def speculation_row(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("Speculation quality"))
        .with_panel(
            time_series(
                "Acceptance rate α",
                "Share of draft tokens the target model accepted: Σ rate(accepted) / Σ rate(drafted) "
                "from vLLM's counters, next to the controller's EWMA estimate it plans γ with. "
                "Higher α makes longer drafts pay.",
                "percentunit",
                [
                    (q.ACCEPTANCE_RATE, "{{model_name}} · accepted / drafted (vLLM)"),
                    (q.CONTROLLER_ACCEPTANCE_RATE, "{{model_name}} · controller EWMA"),
                ],
                max_value=1,
            )
        )
        .with_panel(
            time_series(
                "Acceptance by draft position",
                "vLLM: share of drafts accepted through draft token k (0-based; a token counts only "
                "if all before it were accepted), the cumulative product p_1…p_(k+1). Controller: "
                "conditional p_k = P(token k accepted | tokens before it accepted), 1-based. "
                "Falling p_k is why long drafts stop paying.",
                "percentunit",
                [
                    (q.ACCEPTED_THROUGH_POSITION, "{{model_name}} · accepted through token {{position}} (vLLM)"),
                    (q.CONTROLLER_ACCEPTANCE_BY_POSITION, "{{model_name}} · p{{position}} conditional (controller)"),
                ],
                max_value=1,
            )
        )
        .with_panel(
            time_series(
                "Mean accepted length",
                "vLLM: tokens emitted per verification step that carried a draft, 1 (the "
                "target's own token) + accepted drafts / drafts; the ceiling is γ + 1. Controller: "
                "tokens per request per scheduling step, 1 + accepted drafts / running requests, "
                "steps with γ = 0 included — the decode speed multiplier actually delivered.",
                "none",
                [
                    (q.MEAN_ACCEPTED_LENGTH, "{{model_name}} · tokens per draft step (vLLM)"),
                    (q.CONTROLLER_TOKENS_PER_REQUEST_STEP, "{{model_name}} · tokens per request-step (controller)"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Draft tokens proposed vs accepted",
                "Draft tokens per second the drafter proposed and the target accepted. The gap is "
                "verification work spent on rejected tokens.",
                TOKENS_PER_SECOND,
                [
                    (q.DRAFT_TOKENS_PER_SECOND, "{{model_name}} · drafted"),
                    (q.ACCEPTED_TOKENS_PER_SECOND, "{{model_name}} · accepted"),
                ],
            )
        )
    )


def controller_row(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("γ controller"))
        .with_panel(
            histogram_heatmap(
                "γ chosen per scheduling step",
                "Scheduling steps per second at each draft length γ (rows: γ ≤ bucket bound; "
                "Grafana de-accumulates the buckets). A band at 0 means speculation is off for "
                "those steps (large batches, low acceptance); bands move as load and acceptance "
                "change." + CONTROLLER_NOTE,
                q.GAMMA_HEATMAP,
                span=12,
            )
        )
        .with_panel(
            time_series(
                "Mean γ",
                "Mean draft length per scheduling step (histogram sum / count rates)." + CONTROLLER_NOTE,
                "none",
                [(q.GAMMA_MEAN, "{{model_name}} · mean γ")],
                span=6,
            )
        )
        .with_panel(
            label_stat(
                "γ policy",
                "The controller's policy: adaptive (roofline + live acceptance), fixed:K, "
                "table:… (static by batch size) or off." + CONTROLLER_NOTE,
                (q.GAMMA_POLICY, "{{policy}}"),
            )
        )
        .with_panel(
            time_series(
                "Predicted speedup",
                "Roofline-predicted speedup of the chosen γ over no speculation: E(α, γ) / "
                "(verify cost / plain step cost + draft cost). 1.0 = γ 0 chosen; below the dashed "
                "line speculation is predicted to slow decoding (alert SpecgateSpeculationSlowsDecoding)."
                + CONTROLLER_NOTE,
                TIMES,
                [(q.PREDICTED_SPEEDUP, "{{model_name}} · predicted speedup")],
                min_value=None,
                threshold_line=1,
            )
        )
        .with_panel(
            time_series(
                "Batch size",
                "Running decode requests per scheduling step: the x of the crossover. Speculation "
                "pays at small batches (memory-bound steps) and stops paying as steps turn "
                "compute-bound." + CONTROLLER_NOTE,
                "none",
                [
                    (q.BATCH_SIZE_MEAN, "{{model_name}} · mean"),
                    (q.BATCH_SIZE_P90, "{{model_name}} · p90"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Goodput: predicted vs observed",
                "Controller's predicted output tokens/s of the batch at the chosen γ, next to the "
                "generation tokens/s vLLM reports. A lasting gap means the cost model needs "
                "recalibration." + CONTROLLER_NOTE,
                TOKENS_PER_SECOND,
                [
                    (q.PREDICTED_GOODPUT, "{{model_name}} · predicted"),
                    (q.GENERATION_TOKENS_PER_SECOND, "{{model_name}} · observed (vLLM)"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Step time: predicted vs observed",
                "Mean seconds per scheduling step the roofline predicted for the chosen γ and batch, "
                "and what the step took (mean and p99). Observed / predicted outside [0.67, 1.5] "
                "fires SpecgateStepTimeMispredicted." + CONTROLLER_NOTE,
                "s",
                [
                    (q.PREDICTED_STEP_MEAN, "{{model_name}} · predicted mean"),
                    (q.OBSERVED_STEP_MEAN, "{{model_name}} · observed mean"),
                    (q.OBSERVED_STEP_P99, "{{model_name}} · observed p99"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Controller decision time",
                "Seconds the controller spends choosing γ per step (p50, p99): overhead added to "
                "every step, should stay far below the step time." + CONTROLLER_NOTE,
                "s",
                [
                    (q.DECISION_P50, "{{model_name}} · p50"),
                    (q.DECISION_P99, "{{model_name}} · p99"),
                ],
            )
        )
    )


def serving_row(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("Serving"))
        .with_panel(
            time_series(
                "Throughput",
                "Generated (output) and prompt (input) tokens per second.",
                TOKENS_PER_SECOND,
                [
                    (q.GENERATION_TOKENS_PER_SECOND, "{{model_name}} · generation"),
                    (q.PROMPT_TOKENS_PER_SECOND, "{{model_name}} · prompt"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Requests running / waiting",
                "Requests in the running batch and in the queue. A queue that does not drain is "
                "the autoscaling signal (HPA on vllm:num_requests_waiting).",
                "none",
                [
                    (q.REQUESTS_RUNNING, "{{model_name}} · running"),
                    (q.REQUESTS_WAITING, "{{model_name}} · waiting"),
                ],
            )
        )
        .with_panel(
            time_series(
                "Time to first token",
                "TTFT percentiles from vLLM's histogram (queueing + prefill).",
                "s",
                [(q.ttft(p), f"{{{{model_name}}}} · p{round(p * 100)}") for p in (0.5, 0.9, 0.99)],
                span=8,
            )
        )
        .with_panel(
            time_series(
                "Inter-token latency",
                "Time between streamed tokens. Speculation lowers the mean but emits tokens in "
                "bursts of accepted drafts, so p99 shows the verification step time.",
                "s",
                [(q.itl(p), f"{{{{model_name}}}} · p{round(p * 100)}") for p in (0.5, 0.9, 0.99)],
                span=8,
            )
        )
        .with_panel(
            time_series(
                "End-to-end request latency",
                "Request latency percentiles, arrival to last token.",
                "s",
                [(q.e2e(p), f"{{{{model_name}}}} · p{round(p * 100)}") for p in (0.5, 0.99)],
                span=8,
            )
        )
    )


def crossover_row(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("Crossover"))
        .with_panel(
            scatter(
                "Crossover: predicted speedup vs batch size",
                "Each point is one time step: x = mean running requests per scheduling step, "
                "y = the controller's predicted speedup for the γ it chose. With the adaptive "
                "policy points sit above 1.0 at small batches and fall to exactly 1.0 (γ = 0) past "
                "the crossover; with a fixed γ they drop below 1.0 there — speculation slowing "
                "decoding. The x where points reach 1.0 is this deployment's crossover batch size."
                + CONTROLLER_NOTE,
                (q.CROSSOVER_BATCH_SIZE, "batch size"),
                (q.CROSSOVER_PREDICTED_SPEEDUP, "predicted speedup"),
                x_unit="none",
                y_unit=TIMES,
            )
        )
        .with_panel(
            scatter(
                "Throughput vs running requests (observed)",
                "Each point is one time step: x = running requests (mean over the interval), "
                "y = generation tokens/s. The observed throughput curve; to see the crossover, run "
                "one gateway with speculation and one with --speculative off under the same load "
                "(or select them one at a time in `instance`) and compare the curves: where the "
                "speculative curve falls under the plain one, speculation costs throughput.",
                (q.CROSSOVER_RUNNING_REQUESTS, "running requests"),
                (q.CROSSOVER_GENERATION_TOKENS_PER_SECOND, "generation tok/s"),
                x_unit="none",
                y_unit=TOKENS_PER_SECOND,
            )
        )
    )


def overview_dashboard() -> Dashboard:
    dashboard = (
        Dashboard("specgate · speculative decoding")
        .uid("specgate-overview")
        .description(
            "Acceptance, γ controller decisions, roofline predictions vs observations, serving "
            "latency and the batch-size crossover of the specgate gateway."
        )
        .tags(["specgate", "vllm", "speculative-decoding"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(label_variable("model_name", "Model", q.MODEL_NAME_VALUES))
        .with_variable(label_variable("instance", "Instance", q.INSTANCE_VALUES))
    )
    for add_row in (speculation_row, controller_row, serving_row, crossover_row):
        dashboard = add_row(dashboard)
    return dashboard


def number_panels(dashboard_json: dict) -> dict:
    for panel_id, panel in enumerate(dashboard_json["panels"], start=1):
        panel["id"] = panel_id
    return dashboard_json


DASHBOARDS = {"specgate-overview.json": overview_dashboard}


def render(build) -> str:
    encoded = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(number_panels(encoded), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="folder to write the JSON into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for file_name, build in DASHBOARDS.items():
        (args.out / file_name).write_text(render(build), encoding="utf-8")
        print(args.out / file_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
