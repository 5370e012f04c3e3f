"""The controller's targets on real prompts, without machine noise: the committed recorded
outputs (MT-Bench, HumanEval, SQuAD summaries) replayed through the real controller, priced
by the step-time line fitted to this CPU's step log (see loadtests/replay.py)."""

from pathlib import Path

import pytest

from loadtests.bench_gamma_policies import DEFAULT_TABLE, geomean
from loadtests.replay import ReplayPlan, fit_step_time, load_traces, replay_workload
from server.model_prep import default_model_dir

RESULTS = Path(__file__).resolve().parents[2] / "loadtests" / "results" / "replay"
FIXED = ("off", "fixed:1", "fixed:2", "fixed:4", "fixed:8")


@pytest.fixture(scope="module")
def points():
    model_dir = default_model_dir()
    if not (model_dir / "config.json").is_file():
        pytest.skip("embedded model not prepared")
    step_time = fit_step_time(RESULTS / "steps.csv.gz")
    measured = {}
    for workload in ("mtbench", "humaneval", "squad"):
        levels = replay_workload(load_traces(RESULTS / f"{workload}.jsonl.gz"), (*FIXED, DEFAULT_TABLE, "adaptive"),
                                 step_time, ReplayPlan(), model_dir)
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
