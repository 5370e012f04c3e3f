"""The γ-policy benchmark's report arithmetic (the benchmark itself is a script, not a test)."""

import json

import pytest

from loadtests.bench_gamma_policies import report, table_twin

TABLE = "table:[[1,4,4],[5,16,2],[17,4096,0]]"
MODES = ["off", "fixed:2", "fixed:4", TABLE, "adaptive"]


@pytest.mark.parametrize(("concurrency", "twin"), [(1, "fixed:4"), (4, "fixed:4"), (8, None), (16, None)])
def test_a_table_is_a_fixed_mode_only_where_every_batch_up_to_c_gets_the_same_gamma(concurrency, twin):
    assert table_twin(TABLE, concurrency, MODES) == twin


def test_the_off_row_twins_with_off_and_missing_modes_twin_with_nothing():
    assert table_twin("table:[[1,4096,0]]", 64, MODES) == "off"
    assert table_twin(TABLE, 2, ["off", "adaptive", TABLE]) is None


def test_report_ratios_and_noise(tmp_path, capsys):
    results = {"w": {1: {"off": 10.0, "fixed:2": 12.0, "fixed:4": 15.0, TABLE: 14.0, "adaptive": 15.0},
                     8: {"off": 40.0, "fixed:2": 48.0, "fixed:4": 44.0, TABLE: 47.0, "adaptive": 47.0}}}
    report(results, MODES, tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["min_adaptive_over_best"] == pytest.approx(47 / 48)
    assert saved["best_single_fixed"] == "fixed:4"  # geomean √(15·44) > √(12·48)
    assert saved["adaptive_over_best_single_geomean"] == pytest.approx(((15 / 15) * (47 / 44)) ** 0.5)
    assert saved["identical_policy_gaps"] == [pytest.approx(15 / 14 - 1)]  # only c=1 has a twin
    assert "noise" in capsys.readouterr().out


def test_report_repeats_the_ratios_on_whole_run_throughput(tmp_path):
    steady = {"w": {1: {"off": 10.0, "fixed:2": 12.0, "fixed:4": 15.0, TABLE: 14.0, "adaptive": 15.0}}}
    whole = {"off": 11.0, "fixed:2": 12.0, "fixed:4": 13.0, TABLE: 13.0, "adaptive": 12.0}
    profiles = {"w": {"1": {m: {"whole_run_tokens_per_second": v} for m, v in whole.items()}}}
    report(steady, MODES, tmp_path / "r.json", profiles)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["min_adaptive_over_best"] == pytest.approx(1.0)
    assert saved["whole_run"]["min_adaptive_over_best"] == pytest.approx(12 / 13)
