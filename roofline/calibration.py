"""Calibration: fit t0 and a scale to measured step times, and measure this machine's rates.

The plain roofline is a lower bound built from peak rates; real steps pay a fixed cost per
step (kernel launches, scheduling, sampling, Python) and reach only part of the peaks. The
controller therefore predicts measured ≈ t0 + scale · roofline and refits (t0, scale) online.
This matters most where fixed overhead dominates (small models, small batches), where the
plain roofline underestimates the benefit of speculation.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from roofline.specs import HardwareSpec

MIN_SCALE = 1e-6


def fit_overhead_and_scale(samples: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (t0, scale) for measured ≈ t0 + scale · predicted, with t0 ≥ 0, scale > 0.

    ``samples`` are (predicted roofline seconds, measured seconds) pairs. Non-finite or
    negative pairs are dropped. Degenerate input stays usable: no samples → (0, 1); one
    sample or predictions all equal (the slope is not identifiable) → t0 = 0 and the scale
    that matches the mean. When the unconstrained fit leaves the feasible region, the best
    fit on its boundary (t0 = 0, or scale at its floor) is taken.
    """
    pairs = [
        (float(p), float(m)) for p, m in samples if math.isfinite(p) and math.isfinite(m) and p >= 0.0 and m >= 0.0
    ]
    if not pairs or all(p == 0.0 for p, _ in pairs):
        return 0.0, 1.0
    count = len(pairs)
    mean_p = sum(p for p, _ in pairs) / count
    mean_m = sum(m for _, m in pairs) / count
    var_p = sum((p - mean_p) ** 2 for p, _ in pairs)
    candidates = [_through_origin(pairs)]
    if var_p > 1e-12 * max(mean_p * mean_p, 1e-300) * count:
        scale = sum((p - mean_p) * (m - mean_m) for p, m in pairs) / var_p
        overhead = mean_m - scale * mean_p
        if scale >= MIN_SCALE and overhead >= 0.0:
            return overhead, scale
        candidates.append((max(0.0, mean_m - MIN_SCALE * mean_p), MIN_SCALE))
    return min(candidates, key=lambda fit: _squared_error(pairs, *fit))


def _through_origin(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    denominator = sum(p * p for p, _ in pairs)
    if not denominator > 0.0:  # predictions so small that their squares underflow
        return 0.0, 1.0
    scale = sum(p * m for p, m in pairs) / denominator
    return 0.0, max(scale, MIN_SCALE) if math.isfinite(scale) else 1.0


def _squared_error(pairs: list[tuple[float, float]], overhead: float, scale: float) -> float:
    return sum((m - overhead - scale * p) ** 2 for p, m in pairs)


@dataclass(frozen=True, slots=True)
class StepModelFit:
    """measured ≈ overhead_seconds + per_token_seconds · tokens + scale · roofline seconds."""

    overhead_seconds: float
    per_token_seconds: float
    scale: float


# Fewer free parameters first: on ties (too few or collinear samples) the simpler model wins.
_FREE_PARAMETER_SETS = ((2,), (0, 2), (1, 2), (0, 1, 2), (), (0,), (1,), (0, 1))


def fit_step_model(samples: Iterable[tuple[float, float, float]]) -> StepModelFit:
    """Bounded least squares for measured ≈ t0 + t_token · tokens + scale · predicted.

    ``samples`` are (tokens in the step = B·q, predicted roofline seconds, measured seconds).
    The per-token term captures work the roofline does not see and that grows with the
    tokens verified — per-token sampling, and GEMMs far below peak at small M on CPUs — which
    a (t0, scale) fit cannot express: without it, verification looks free on such engines.
    t0 ≥ 0, t_token ≥ 0 and scale ≥ MIN_SCALE; solved exactly by trying every set of
    parameters at their bounds (eight 3-parameter least-squares problems).

    The controller refits in the scheduler's loop, so the samples are read once, into the
    normal equations' sums; each candidate and its squared error then costs O(1).
    """
    moments = _Moments.of(samples)
    if moments.count == 0:
        return StepModelFit(0.0, 0.0, 1.0)
    lower = (0.0, 0.0, MIN_SCALE)
    # Errors come from Σm² − 2θ·Xᵀm + θᵀXᵀXθ: differences below the rounding of Σm² are ties.
    tie = 1e-12 * moments.measured_squared
    best, best_error = None, 0.0
    for free in _FREE_PARAMETER_SETS:
        params = _bounded_solution(moments, free, lower)
        if params is None:
            continue
        error = moments.squared_error(params)
        if best is None or error < best_error - max(1e-9 * abs(best_error), tie):
            best, best_error = params, error
    if best is None:
        return StepModelFit(0.0, 0.0, 1.0)
    return StepModelFit(*best)


@dataclass(frozen=True, slots=True)
class _Moments:
    """Sums over the samples for x = (1, tokens, predicted) and y = measured: XᵀX, Xᵀy, yᵀy."""

    count: int
    gram: tuple[tuple[float, float, float], ...]
    moment: tuple[float, float, float]
    measured_squared: float

    @classmethod
    def of(cls, samples: Iterable[tuple[float, float, float]]) -> _Moments:
        n = st = sp = stt = stp = spp = sm = stm = spm = smm = 0.0
        for t, p, m in samples:
            t, p, m = float(t), float(p), float(m)
            if not all(math.isfinite(v) and v >= 0.0 for v in (t, p, m)):
                continue
            n += 1.0
            st += t
            sp += p
            stt += t * t
            stp += t * p
            spp += p * p
            sm += m
            stm += t * m
            spm += p * m
            smm += m * m
        return cls(int(n), ((n, st, sp), (st, stt, stp), (sp, stp, spp)), (sm, stm, spm), smm)

    def squared_error(self, params: tuple[float, float, float]) -> float:
        """Σ (y − x·θ)² = yᵀy − 2 θ·Xᵀy + θᵀ XᵀX θ."""
        gram = self.gram
        quadratic = sum(params[i] * gram[i][j] * params[j] for i in range(3) for j in range(3))
        return self.measured_squared - 2.0 * sum(p * b for p, b in zip(params, self.moment)) + quadratic


def _bounded_solution(
    moments: _Moments, free: tuple[int, ...], lower: tuple[float, ...]
) -> tuple[float, float, float] | None:
    """Least squares over the ``free`` parameters, the others held at their lower bounds;
    None if singular or out of bounds."""
    params = list(lower)
    if free:
        held = [j for j in range(3) if j not in free]
        gram = [[moments.gram[i][j] for j in free] for i in free]
        # Xᵀ(y − X_held · lower_held) restricted to the free rows
        moment = [moments.moment[i] - sum(lower[j] * moments.gram[i][j] for j in held) for i in free]
        solution = _solve(gram, moment)
        if solution is None:
            return None
        for index, value in zip(free, solution):
            if not (math.isfinite(value) and value >= lower[index]):
                return None
            params[index] = value
    return params[0], params[1], params[2]


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when (numerically) singular."""
    size = len(vector)
    a = [row[:] + [v] for row, v in zip(matrix, vector)]
    scale = max(abs(x) for row in matrix for x in row) or 1.0
    for column in range(size):
        pivot = max(range(column, size), key=lambda r: abs(a[r][column]))
        if abs(a[pivot][column]) <= 1e-12 * scale:
            return None
        a[column], a[pivot] = a[pivot], a[column]
        for r in range(column + 1, size):
            factor = a[r][column] / a[column][column]
            for c in range(column, size + 1):
                a[r][c] -= factor * a[column][c]
    solution = [0.0] * size
    for r in reversed(range(size)):
        solution[r] = (a[r][size] - sum(a[r][c] * solution[c] for c in range(r + 1, size))) / a[r][r]
    return solution


# --------------------------------------------------------------------------------------------
# Measuring this machine (torch, imported only here)
# --------------------------------------------------------------------------------------------


def median_seconds(
    run: Callable[[], object], repeats: int, warmup: int = 2, sync: Callable[[], object] | None = None
) -> float:
    """Median wall time of ``run`` over ``repeats`` calls after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        run()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_hardware(
    name: str = "cpu-local",
    device: str = "cpu",
    copy_bytes: int = 256 * 2**20,
    matmul_size: int = 2048,
    repeats: int = 10,
) -> HardwareSpec:
    """Achieved memory bandwidth (a large tensor copy: read + write) and bf16 matmul FLOP/s
    on ``device``, each the median of ``repeats`` timed runs after a warm-up."""
    import torch  # heavy and optional: only calibration needs it

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    source_tensor = torch.empty(copy_bytes // 4, dtype=torch.float32, device=dev).fill_(1.0)
    target_tensor = torch.empty_like(source_tensor)
    copy_seconds = median_seconds(lambda: target_tensor.copy_(source_tensor), repeats, sync=sync)
    bandwidth = 2 * source_tensor.numel() * source_tensor.element_size() / copy_seconds

    a = torch.randn(matmul_size, matmul_size, device=dev).to(torch.bfloat16)
    b = torch.randn(matmul_size, matmul_size, device=dev).to(torch.bfloat16)
    matmul_seconds = median_seconds(lambda: torch.matmul(a, b), repeats, sync=sync)
    flops = 2 * matmul_size**3 / matmul_seconds

    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        capacity, what = float(props.total_memory), props.name
    else:
        capacity, what = _physical_memory_bytes(), _cpu_model_name()
    threads = torch.get_num_threads()
    return HardwareSpec(
        name=name,
        display_name=f"{what} ({device}, {threads} threads)",
        memory_bandwidth_bytes_per_second=bandwidth,
        peak_flops_bf16_per_second=flops,
        memory_capacity_bytes=capacity,
        source=(
            f"measured by specgate roofline calibrate on {platform.node() or 'this host'} "
            f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {threads} threads): "
            f"median of {repeats} copies of {copy_bytes / 2**20:.0f} MiB (read + write) and of {repeats} "
            f"{matmul_size}x{matmul_size} bf16 matmuls, after warm-up"
        ),
    )


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


__all__ = ["StepModelFit", "fit_overhead_and_scale", "fit_step_model", "measure_hardware", "median_seconds"]
