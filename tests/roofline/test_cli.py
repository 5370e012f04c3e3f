from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from roofline.cli import main

has_torch = importlib.util.find_spec("torch") is not None


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_speedup_classic_reproduces_leviathan(capsys):
    report = run_json(capsys, "speedup", "--acceptance", "0.8", "--draft-cost", "0", "--gamma", "5", "--classic")
    assert round(report["speedup"], 2) == 3.69
    assert round(report["operations_factor"], 2) == 1.63
    assert report["mode"] == "classic"


def test_speedup_roofline_with_model(capsys):
    report = run_json(
        capsys,
        "speedup",
        "-a",
        "0.7",
        "-c",
        "0.05",
        "-g",
        "3",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100",
        "--batch",
        "256",
        "--seq",
        "1024",
    )
    assert report["mode"] == "roofline"
    assert report["verify_cost_ratio"] > 1.1
    assert report["speedup"] == pytest.approx(
        report["expected_tokens"] / (report["verify_cost_ratio"] + 0.15), rel=1e-6
    )


def test_optimal_classic_and_per_position(capsys):
    report = run_json(capsys, "optimal", "--acceptance", "0.8", "--draft-cost", "0.1", "--gamma-max", "8", "--classic")
    assert report["gamma"] == 6 and len(report["curve"]) == 9 and report["curve"][0] == 1.0
    vector = run_json(capsys, "optimal", "-a", "0.77,0.63,0.48,0.40", "-c", "0.02", "--gamma-max", "8")
    assert vector["acceptance"] == [0.77, 0.63, 0.48, 0.40]
    assert 1 <= vector["gamma"] <= 8


def test_estimate_rows_per_batch(capsys):
    report = run_json(
        capsys,
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100",
        "--batch",
        "1,8,64,256",
        "--seq",
        "4096",
        "--acceptance",
        "0.75",
        "--draft-cost",
        "0.1",
    )
    rows = report["rows"]
    assert [r["batch"] for r in rows] == [1, 8, 64, 256]
    assert rows[0]["bound"] == "memory" and rows[0]["gamma"] == 5
    assert all(r["speedup"] >= 1.0 for r in rows)
    assert [r["gamma"] for r in rows] == sorted((r["gamma"] for r in rows), reverse=True)


def test_estimate_with_draft_model_and_dtypes(capsys):
    report = run_json(
        capsys,
        "estimate",
        "-m",
        "llama-3.1-70b",
        "-H",
        "h200",
        "--batch",
        "1,64",
        "-a",
        "0.8",
        "--draft-model",
        "llama-3.1-8b",
        "--weight-dtype",
        "fp8",
        "--kv-dtype",
        "fp8",
    )
    assert report["draft_model"] == "llama-3.1-8b" and report["weight_dtype"] == "fp8"
    assert report["rows"][0]["fits_in_memory"]


def test_estimate_table_is_readable(capsys):
    assert main(["estimate", "-m", "smollm2-135m", "-H", "cpu-local", "--batch", "1,16", "-a", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "batch" in out and "γ*" in out and "speedup" in out and "memory" in out


def test_crossover_finds_the_batch_where_speculation_stops_paying(capsys):
    report = run_json(
        capsys,
        "crossover",
        "-m",
        "llama-3.1-70b",
        "-H",
        "h100",
        "-a",
        "0.75",
        "--draft-model",
        "llama-3.1-8b",
        "--seq",
        "512",
    )
    batch = report["crossover_batch"]
    assert 32 < batch < 1024
    assert report["first_batch_not_paying"] == batch + 1
    from roofline import load_hardware, load_model
    from roofline.planner import GammaPlanner

    planner = GammaPlanner(
        load_model("llama-3.1-70b"),
        load_hardware("h100"),
        16,
        draft_model=load_model("llama-3.1-8b"),
        bucket_seq_len=False,
    )
    assert planner.optimal(batch, 512, 0.75)[1] > 1.0
    assert planner.optimal(batch + 1, 512, 0.75) == (0, 1.0)


def test_crossover_reports_never_and_always(capsys):
    never = run_json(capsys, "crossover", "-m", "llama-3.1-8b", "-H", "h100", "-a", "0.1", "-c", "0.5")
    assert never["crossover_batch"] == 0
    always = run_json(
        capsys, "crossover", "-m", "llama-3.1-8b", "-H", "h100", "-a", "0.9", "--seq", "8192", "--max-batch", "512"
    )
    assert always["crossover_batch"] is None and always["pays_up_to_max_batch"]


def test_plot_writes_a_png(tmp_path, capsys):
    output = tmp_path / "roofline.png"
    assert (
        main(
            [
                "plot",
                "-m",
                "smollm2-135m",
                "-H",
                "cpu-local",
                "--max-batch",
                "64",
                "--batches",
                "1,16",
                "--gamma-max",
                "6",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 20_000


def test_fit_from_csv(tmp_path, capsys):
    from roofline import load_hardware, load_model
    from roofline.cost import step_time_seconds

    model, hardware = load_model("smollm2-135m"), load_hardware("cpu-local")
    rows = ["batch,query_len,seq_len,measured_seconds"]
    for batch, query_len in [(1, 1), (4, 1), (16, 5), (64, 1), (64, 3)]:
        rows.append(f"{batch},{query_len},512,{0.01 + 2.0 * step_time_seconds(model, hardware, batch, query_len, 512)}")
    samples = tmp_path / "steps.csv"
    samples.write_text("\n".join(rows))
    report = run_json(capsys, "fit", "-m", "smollm2-135m", "-H", "cpu-local", str(samples))
    assert report["overhead_seconds"] == pytest.approx(0.01) and report["scale"] == pytest.approx(2.0)


def test_presets_lists_everything(capsys):
    report = run_json(capsys, "presets")
    assert "mixtral-8x7b" in report["models"] and "mi300x" in report["hardware"]


def test_errors_exit_with_two(capsys):
    assert main(["estimate", "-m", "no-such-model", "-H", "h100", "-a", "0.5"]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["optimal", "--acceptance", "1.5"])
    with pytest.raises(SystemExit):
        main(["optimal", "-a", "0.5", "--model", "llama-3.1-8b"])  # model without hardware


@pytest.mark.skipif(not has_torch, reason="calibration measures with torch")
def test_calibrate_writes_a_hardware_toml_usable_by_estimate(tmp_path, capsys):
    output = tmp_path / "here.toml"
    assert (
        main(
            [
                "calibrate",
                "--name",
                "here",
                "--copy-mib",
                "8",
                "--matmul-size",
                "256",
                "--repeats",
                "3",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    capsys.readouterr()
    report = run_json(capsys, "estimate", "-m", "smollm2-135m", "-H", str(output), "--batch", "1", "-a", "0.6")
    assert report["hardware"] == "here"


def test_console_script_dispatch_and_no_heavy_imports():
    """`specgate roofline …` goes through server.cli; the roofline package must not pull in
    torch or vLLM (the controller imports it inside the engine's scheduler)."""
    code = (
        "import sys; from server.cli import main; "
        "rc = main(['roofline', 'optimal', '-a', '0.8', '-c', '0', '--gamma-max', '5', '--classic', '--json']); "
        "import roofline.cli, roofline.plots, roofline.calibration, roofline.report; "
        "heavy = [m for m in ('torch', 'vllm') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert '"gamma": 5' in result.stdout


def test_fit_with_a_per_token_term(tmp_path, capsys):
    from roofline import load_hardware, load_model
    from roofline.cost import step_time_seconds

    model, hardware = load_model("smollm2-135m"), load_hardware("cpu-local")
    rows = ["batch,query_len,seq_len,measured_seconds"]
    for batch, query_len in [(1, 1), (1, 5), (4, 1), (4, 5), (16, 3), (64, 1)]:
        predicted = step_time_seconds(model, hardware, batch, query_len, 512)
        rows.append(f"{batch},{query_len},512,{0.01 + 0.002 * batch * query_len + 1.2 * predicted}")
    samples = tmp_path / "steps.csv"
    samples.write_text("\n".join(rows))
    report = run_json(capsys, "fit", "--per-token", "-m", "smollm2-135m", "-H", "cpu-local", str(samples))
    assert (report["overhead_seconds"], report["per_token_seconds"], report["scale"]) == pytest.approx(
        (0.01, 0.002, 1.2), rel=1e-6
    )
    estimate = run_json(
        capsys,
        "estimate",
        "-m",
        "smollm2-135m",
        "-H",
        "cpu-local",
        "--batch",
        "1,64",
        "-a",
        "0.57",
        "--overhead-ms",
        "10",
        "--per-token-ms",
        "2",
        "--scale",
        "1.2",
    )
    assert estimate["rows"][1]["gamma"] <= 1


def test_gamma_max_zero_and_block_limits(capsys):
    report = run_json(capsys, "optimal", "-a", "0.9", "--gamma-max", "0", "-m", "llama-3.1-8b", "-H", "h100")
    assert (report["gamma"], report["speedup"], report["curve"]) == (0, 1.0, [1.0])
    assert (
        main(["speedup", "-a", "0.9", "-g", "6", "-m", "llama-3.1-8b", "-H", "h100", "--draft-block", "4", "-c", "0.2"])
        == 2
    )
    assert "block size" in capsys.readouterr().err
