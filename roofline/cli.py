"""`specgate roofline …`: speedup, optimal, estimate, crossover, plot, calibrate, fit, presets.

Prints a readable table, or JSON with --json. All the arithmetic lives in the library; this
module only parses arguments and renders results.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from roofline.planner import GammaPlanner
from roofline.report import (
    crossover_report,
    estimate_report,
    optimal_report,
    speedup_report,
)
from roofline.specs import (
    hardware_presets,
    hardware_to_toml,
    load_hardware,
    load_model,
    model_presets,
)
from roofline.speculation import Acceptance


def _acceptance(text: str) -> Acceptance:
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"acceptance must be a rate in [0, 1] or a comma list of them: {text!r}")
    return values[0] if len(values) == 1 else values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0: {text}")
    return value


def _add_speculation_args(parser: argparse.ArgumentParser, acceptance_required: bool = True) -> None:
    parser.add_argument(
        "--acceptance",
        "-a",
        type=_acceptance,
        required=acceptance_required,
        default=None if acceptance_required else 0.75,
        help="per-token acceptance rate α, or per-position conditional rates p1,p2,… (last one repeats)",
    )
    parser.add_argument(
        "--draft-cost",
        "-c",
        type=_non_negative,
        default=0.0,
        help="draft cost in target decode steps: per draft token, or per block with --draft-block (default 0)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_model_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--model", "-m", required=required, help="model preset, HF id, local model folder, or .toml")
    parser.add_argument("--hardware", "-H", required=required, help="hardware preset or .toml (e.g. from calibrate)")
    parser.add_argument("--seq", type=int, default=4096, help="KV-cache length per sequence (default 4096)")
    parser.add_argument("--draft-model", help="draft model (preset or folder): its roofline step is the draft cost")
    parser.add_argument("--draft-block", type=int, help="block drafter: one pass proposes up to N tokens (γ ≤ N)")
    parser.add_argument("--weight-dtype", help="override weight dtype (bfloat16, float16, fp8, int8, int4)")
    parser.add_argument("--kv-dtype", help="override KV-cache dtype (bfloat16, float16, fp8)")
    parser.add_argument("--overhead-ms", type=_non_negative, default=0.0, help="fixed per-step overhead t0 in ms")
    parser.add_argument("--scale", type=float, default=1.0, help="calibrated factor on the roofline time")
    parser.add_argument("--per-token-ms", type=_non_negative, default=0.0, help="calibrated per-token step cost in ms")


def _gamma_max_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gamma-max", type=int, default=16, help="largest γ considered (default 16)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specgate roofline",
        description="Roofline model of speculative decoding: what γ, and how much faster.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    speedup = commands.add_parser("speedup", help="speedup of one γ")
    _add_speculation_args(speedup)
    speedup.add_argument("--gamma", "-g", type=int, required=True, help="draft tokens per step")
    speedup.add_argument("--classic", action="store_true", help="Leviathan et al. Thm 3.8 (verification free)")
    _add_model_args(speedup, required=False)
    speedup.add_argument("--batch", type=int, default=1, help="batch size (with --model/--hardware)")

    optimal = commands.add_parser("optimal", help="γ* and its speedup")
    _add_speculation_args(optimal)
    _gamma_max_arg(optimal)
    optimal.add_argument("--classic", action="store_true", help="Leviathan et al. Thm 3.8 (verification free)")
    _add_model_args(optimal, required=False)
    optimal.add_argument("--batch", type=int, default=1, help="batch size (with --model/--hardware)")

    estimate = commands.add_parser("estimate", help="per batch size: step time, bound, γ*, speedup")
    _add_model_args(estimate, required=True)
    _add_speculation_args(estimate)
    _gamma_max_arg(estimate)
    estimate.add_argument("--batch", type=_int_list, default=[1, 8, 64, 256], help="batch sizes, e.g. 1,8,64,256")

    crossover = commands.add_parser("crossover", help="the batch size above which speculation stops paying")
    _add_model_args(crossover, required=True)
    _add_speculation_args(crossover)
    _gamma_max_arg(crossover)
    crossover.add_argument("--max-batch", type=int, default=4096, help="largest batch searched (default 4096)")
    crossover.add_argument("--min-speedup", type=float, default=1.0, help="speedup that counts as paying (default 1.0)")

    plot = commands.add_parser("plot", help="heatmaps of γ* and speedup, and speedup-vs-γ curves (PNG)")
    _add_model_args(plot, required=True)
    _add_speculation_args(plot, acceptance_required=False)
    _gamma_max_arg(plot)
    plot.add_argument("--batches", type=_int_list, default=[1, 16, 64, 256], help="batch sizes for the γ curves")
    plot.add_argument("--max-batch", type=int, default=1024, help="largest batch on the heatmaps (default 1024)")
    plot.add_argument("--output", "-o", required=True, help="PNG file to write")

    calibrate = commands.add_parser("calibrate", help="measure bandwidth and matmul FLOP/s here (needs torch)")
    calibrate.add_argument("--name", default="cpu-local", help="name of the hardware table written")
    calibrate.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    calibrate.add_argument("--repeats", type=int, default=10)
    calibrate.add_argument("--copy-mib", type=int, default=256, help="size of the tensor copied")
    calibrate.add_argument("--matmul-size", type=int, default=2048, help="n of the n×n bf16 matmul")
    calibrate.add_argument("--output", "-o", help="TOML file to write (default: print)")
    calibrate.add_argument("--json", action="store_true")

    fit = commands.add_parser("fit", help="fit t0 and scale to measured step times (CSV)")
    fit.add_argument("--model", "-m", required=True)
    fit.add_argument("--hardware", "-H", required=True)
    fit.add_argument("samples", help="CSV with columns batch,query_len,seq_len,measured_seconds")
    fit.add_argument("--per-token", action="store_true", help="also fit a per-token cost t_token")
    fit.add_argument("--json", action="store_true")

    presets = commands.add_parser("presets", help="list model and hardware presets")
    presets.add_argument("--json", action="store_true")
    return parser


def _model(args: argparse.Namespace):
    return load_model(args.model).with_dtypes(args.weight_dtype, args.kv_dtype)


def _planner(args: argparse.Namespace) -> GammaPlanner:
    draft_model = load_model(args.draft_model) if args.draft_model else None
    gamma_max = getattr(args, "gamma_max", None)
    if gamma_max is None:
        gamma_max = max(16, args.gamma)
    return GammaPlanner(
        _model(args),
        load_hardware(args.hardware),
        gamma_max=gamma_max,
        draft_cost_ratio=args.draft_cost,
        overhead_seconds=args.overhead_ms / 1e3,
        scale=args.scale,
        per_token_seconds=args.per_token_ms / 1e3,
        draft_model=draft_model,
        draft_block_size=args.draft_block,
        bucket_seq_len=False,
    )


def _optional_planner(args: argparse.Namespace) -> GammaPlanner | None:
    if bool(args.model) != bool(args.hardware):
        raise SystemExit("specgate roofline: give both --model and --hardware, or neither")
    if not args.model and (args.draft_model or args.draft_block):
        raise SystemExit("specgate roofline: --draft-model and --draft-block need --model and --hardware")
    return _planner(args) if args.model else None


def _fmt_acceptance(acceptance) -> str:
    return f"{acceptance:g}" if isinstance(acceptance, float) else ",".join(f"{p:g}" for p in acceptance)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _print_settings(report: dict) -> None:
    draft = f"draft cost {report['draft_cost']:g}"
    if report.get("draft_model"):
        draft += f" + draft model {report['draft_model']}"
    if report.get("draft_block_size"):
        draft += f" per block of {report['draft_block_size']}"
    print(
        f"{report['model']} ({report['weight_dtype']}, KV {report['kv_cache_dtype']}) on {report['hardware']}, "
        f"seq {report['seq_len']}, acceptance {_fmt_acceptance(report['acceptance'])}, {draft}, "
        f"γ ≤ {report['gamma_max']}, t0 {report['overhead_seconds'] * 1e3:g} ms, scale {report['scale']:g}"
        + (f", {report['per_token_seconds'] * 1e3:g} ms/token" if report["per_token_seconds"] else "")
    )


def _run_speedup(args: argparse.Namespace) -> dict:
    planner = _optional_planner(args)
    if planner is not None and args.gamma > planner.gamma_max:
        raise ValueError(f"γ = {args.gamma} exceeds the block size {planner.gamma_max}")
    report = speedup_report(args.acceptance, args.gamma, args.draft_cost, args.classic, planner, args.batch, args.seq)
    if not args.json:
        where = (
            f" at batch {args.batch}, seq {args.seq} on {planner.hardware.name}" if planner and not args.classic else ""
        )
        print(f"γ = {args.gamma}, acceptance {_fmt_acceptance(args.acceptance)}, draft cost {args.draft_cost:g}{where}")
        print(f"expected tokens per step E = {report['expected_tokens']:.4f}")
        print(f"verification cost = {report['verify_cost_ratio']:.4f} decode steps ({report['mode']})")
        if "operations_factor" in report:
            print(f"operations factor = {report['operations_factor']:.4f}x")
        print(f"speedup = {report['speedup']:.4f}x")
    return report


def _run_optimal(args: argparse.Namespace) -> dict:
    planner = _optional_planner(args)
    report = optimal_report(
        args.acceptance, args.draft_cost, args.gamma_max, args.classic, planner, args.batch, args.seq
    )
    if not args.json:
        print(f"γ* = {report['gamma']}, speedup {report['speedup']:.4f}x ({report['mode']})")
        rows = [[str(g), f"{s:.4f}"] for g, s in enumerate(report["curve"])]
        print(_table(["γ", "speedup"], rows))
    return report


def _run_estimate(args: argparse.Namespace) -> dict:
    report = estimate_report(_planner(args), args.batch, args.seq, args.acceptance)
    if not args.json:
        _print_settings(report)
        rows = [
            [
                str(r["batch"]),
                f"{r['step_ms']:.3f}",
                f"{r['tokens_per_second']:.0f}",
                r["bound"],
                str(r["gamma"]),
                f"{r['speedup']:.3f}x",
                f"{r['tokens_per_second_with_sd']:.0f}",
                "yes" if r["fits_in_memory"] else "NO",
            ]
            for r in report["rows"]
        ]
        print(_table(["batch", "step ms", "tok/s", "bound", "γ*", "speedup", "tok/s SD", "fits"], rows))
    return report


def _run_crossover(args: argparse.Namespace) -> dict:
    report = crossover_report(_planner(args), args.seq, args.acceptance, args.max_batch, args.min_speedup)
    if not args.json:
        _print_settings(report)
        if report["crossover_batch"] is None:
            print(f"speculation pays at every batch up to {args.max_batch}")
        elif report["crossover_batch"] == 0:
            print("speculation does not pay even at batch 1")
        else:
            print(
                f"speculation pays up to batch {report['crossover_batch']} "
                f"(γ* {report['gamma_at_crossover']}, {report['speedup_at_crossover']:.3f}x there); "
                f"from batch {report['first_batch_not_paying']} on, γ* = 0"
            )
    return report


def _run_plot(args: argparse.Namespace) -> dict:
    from roofline.plots import plot_overview  # matplotlib only when plotting

    path = plot_overview(_planner(args), args.seq, args.acceptance, args.batches, args.max_batch, args.output)
    report = {"output": str(path)}
    if not args.json:
        print(f"wrote {path}")
    return report


def _run_calibrate(args: argparse.Namespace) -> dict:
    from roofline.calibration import measure_hardware

    spec = measure_hardware(args.name, args.device, args.copy_mib * 2**20, args.matmul_size, args.repeats)
    text = hardware_to_toml(spec)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    report = {
        "name": spec.name,
        "memory_bandwidth_bytes_per_second": spec.memory_bandwidth_bytes_per_second,
        "peak_flops_bf16_per_second": spec.peak_flops_bf16_per_second,
        "memory_capacity_bytes": spec.memory_capacity_bytes,
        "source": spec.source,
        "output": args.output,
    }
    if not args.json:
        print(text, end="")
        if args.output:
            print(f"# wrote {args.output}; use it with --hardware {args.output}")
    return report


def _run_fit(args: argparse.Namespace) -> dict:
    from roofline.calibration import fit_overhead_and_scale, fit_step_model
    from roofline.cost import step_time_seconds

    model, hardware = load_model(args.model), load_hardware(args.hardware)
    with open(args.samples, newline="") as handle:
        rows = list(csv.DictReader(handle))
    samples = [
        (
            int(r["batch"]) * int(r["query_len"]),
            step_time_seconds(model, hardware, int(r["batch"]), int(r["query_len"]), int(r["seq_len"])),
            float(r["measured_seconds"]),
        )
        for r in rows
    ]
    if args.per_token:
        fitted = fit_step_model(samples)
        overhead, per_token, scale = fitted.overhead_seconds, fitted.per_token_seconds, fitted.scale
    else:
        (overhead, scale), per_token = fit_overhead_and_scale((p, m) for _, p, m in samples), 0.0
    report = {
        "model": model.name,
        "hardware": hardware.name,
        "samples": len(samples),
        "overhead_seconds": overhead,
        "per_token_seconds": per_token,
        "scale": scale,
    }
    if not args.json:
        print(
            f"{len(samples)} samples: t0 = {overhead * 1e3:.3f} ms, t_token = {per_token * 1e3:.4f} ms, scale = {scale:.4f}"
        )
        print(f"use: --overhead-ms {overhead * 1e3:.4g} --per-token-ms {per_token * 1e3:.4g} --scale {scale:.4g}")
    return report


def _run_presets(args: argparse.Namespace) -> dict:
    models, hardware = model_presets(), hardware_presets()
    report = {
        "models": {n: {"params": m.total_params, "hf_id": m.hf_id, "source": m.source} for n, m in models.items()},
        "hardware": {
            n: {
                "memory_bandwidth_bytes_per_second": h.memory_bandwidth_bytes_per_second,
                "peak_flops_bf16_per_second": h.peak_flops_bf16_per_second,
                "source": h.source,
            }
            for n, h in hardware.items()
        },
    }
    if not args.json:
        print(
            _table(
                ["model", "params", "hf id"], [[n, f"{m.total_params / 1e9:.3g} B", m.hf_id] for n, m in models.items()]
            )
        )
        print()
        print(
            _table(
                ["hardware", "bandwidth", "bf16 peak", "ridge FLOP/B"],
                [
                    [
                        n,
                        f"{h.memory_bandwidth_bytes_per_second / 1e12:.3g} TB/s",
                        f"{h.peak_flops_bf16_per_second / 1e12:.4g} TFLOP/s",
                        f"{h.ridge_flops_per_byte:.0f}",
                    ]
                    for n, h in hardware.items()
                ],
            )
        )
    return report


_COMMANDS = {
    "speedup": _run_speedup,
    "optimal": _run_optimal,
    "estimate": _run_estimate,
    "crossover": _run_crossover,
    "plot": _run_plot,
    "calibrate": _run_calibrate,
    "fit": _run_fit,
    "presets": _run_presets,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = _COMMANDS[args.command](args)
    except (ValueError, OSError, KeyError) as error:
        print(f"specgate roofline {args.command}: {error}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
