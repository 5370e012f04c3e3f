"""Controller decision cost per scheduling step (target: p99 < 50 µs), on synthetic batches;
what learning the step's outcomes costs (`AcceptanceEstimates.observe`, every request drafting);
and the step-model refit it runs every `calibration_every_steps` steps over its full window.

    python -m loadtests.bench_controller
"""

from __future__ import annotations

import random
import statistics
import time

from loadtests.stats import LatencyStats
from roofline import load_hardware, load_model
from server.controller.controller import ControllerConfig, GammaController
from server.controller.policy import GammaPolicy

BUDGET_SECONDS = 50e-6


def measure(batch: int, steps: int = 5000, gamma_max: int = 4) -> tuple[list[float], list[float]]:
    """(decision seconds, learning seconds) per step, every request drafting and learning each step."""
    controller = GammaController(ControllerConfig(gamma_max=gamma_max, policy=GammaPolicy.parse("adaptive")),
                                 load_model("smollm2-135m"), load_hardware("cpu-local"))
    rng = random.Random(0)
    request_ids = [f"req-{i}" for i in range(batch)]
    seq_len = sum(rng.randint(200, 1500) for _ in range(batch)) // batch
    drafted = [gamma_max] * batch
    decisions, learning = [], []
    for step in range(steps):
        plan = controller.plan(list(request_ids), seq_len + step)  # a new list each step, as the scheduler's
        decisions.append(plan.decision_seconds)
        accepted = [rng.randint(0, gamma_max) for _ in range(batch)]
        started = time.perf_counter()
        controller.acceptance.observe(request_ids, drafted, accepted)
        learning.append(time.perf_counter() - started)
    return decisions, learning


def measure_refit(config: ControllerConfig, repeats: int = 20) -> list[float]:
    """Seconds per refit of the step-cost model over a full window of steps at mixed batch sizes."""
    controller = GammaController(config, load_model("smollm2-135m"), load_hardware("cpu-local"))
    rng = random.Random(0)
    for _ in range(config.calibration_window):
        batch = rng.choice((1, 2, 4, 8, 16, 32, 64))
        tokens = batch * rng.randint(1, 5)
        controller.observe_step(batch, tokens, 0.001 * tokens, 0.038 + 0.0008 * tokens + rng.gauss(0, 0.001))
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        controller.recalibrate()
        timings.append(time.perf_counter() - started)
    return timings


def main() -> int:
    print(f"{'batch':>5}  {'decision p50 µs':>15}  {'p99 µs':>7}  {'p99 / 50 µs budget':>18}  "
          f"{'learning p50 µs':>15}  {'p99 µs':>7}")
    for batch in (1, 4, 16, 64, 256):
        decisions, learning = map(LatencyStats.of, measure(batch))
        print(f"{batch:>5}  {decisions.p50 * 1e6:15.1f}  {decisions.p99 * 1e6:7.1f}  "
              f"{decisions.p99 / BUDGET_SECONDS:18.2f}  {learning.p50 * 1e6:15.1f}  {learning.p99 * 1e6:7.1f}")
    config = ControllerConfig(gamma_max=4, policy=GammaPolicy.parse("adaptive"))
    print(f"step-model refit (every {config.calibration_every_steps} steps, {config.calibration_window} samples): "
          f"median {statistics.median(measure_refit(config)) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
