"""The controller's targets on real prompts, without machine noise: the committed recorded
outputs (MT-Bench, HumanEval, SQuAD summaries; greedy and sampled at temperature 0.7) replayed
through the real controller, priced by the step-time line fitted to this CPU's step log for
that kind of traffic (see loadtests/replay.py)."""

from pathlib import Path

import pytest

from loadtests.bench_gamma_policies import DEFAULT_TABLE, geomean
from loadtests.replay import ReplayPlan, fit_step_time, load_traces, replay_workload
from server.model_prep import default_model_dir

RESULTS = Path(__file__).resolve().parents[2] / "loadtests" / "results" / "replay"
FIXED = ("off", "fixed:1", "fixed:2", "fixed:4", "fixed:8")


@pytest.fixture(scope="module", params=["", "-t07"], ids=["greedy", "sampled"])
def points(request):
    """(workload, concurrency) → tokens/s by mode; `-t07`: the sampled traces and step log."""
    model_dir = default_model_dir()
    if not (model_dir / "config.json").is_file():
        pytest.skip("embedded model not prepared")
    step_time = fit_step_time(RESULTS / f"steps{request.param}.csv.gz")
    measured = {}
    for workload in ("mtbench", "humaneval", "squad"):
        traces = load_traces(RESULTS / f"{workload}{request.param}.jsonl.gz")
        levels = replay_workload(traces, (*FIXED, DEFAULT_TABLE, "adaptive"), step_time, ReplayPlan(), model_dir)
        measured.update({(workload, c): point for c, point in levels.items()})
    return measured


def test_adaptive_is_within_2_percent_of_the_best_fixed_setting_at_every_point(points):
    short = {key: round(point["adaptive"] / max(point[m] for m in FIXED), 3) for key, point in points.items()
             if point["adaptive"] < 0.98 * max(point[m] for m in FIXED)}
    assert not short, f"adaptive / best fixed below 0.98 at {short}"


def test_adaptive_beats_the_best_single_fixed_setting_and_vllms_table_in_geomean(points):
    best_single = max(FIXED, key=lambda m: geomean([p[m] for p in points.values()]))
    over_single = geomean([p["adaptive"] / p[best_single] for p in points.values()])
    over_table = geomean([p["adaptive"] / p[DEFAULT_TABLE] for p in points.values()])
    assert over_single > 1.0, f"adaptive / {best_single}: {over_single:.3f}"
    assert over_table > 1.0, f"adaptive / table: {over_table:.3f}"
