"""Controller decision cost per scheduling step (target: p99 < 50 µs), on synthetic batches.

    python -m loadtests.bench_controller
"""

from __future__ import annotations

import random
import statistics
import time

from roofline import load_hardware, load_model
from server.controller.controller import ControllerConfig, GammaController
from server.controller.policy import GammaPolicy

BUDGET_SECONDS = 50e-6


def measure(batch: int, steps: int = 5000, gamma_max: int = 4) -> list[float]:
    controller = GammaController(ControllerConfig(gamma_max=gamma_max, policy=GammaPolicy.parse("adaptive")),
                                 load_model("smollm2-135m"), load_hardware("cpu-local"))
    rng = random.Random(0)
    requests = [(f"req-{i}", rng.randint(200, 1500)) for i in range(batch)]
    for request_id, _ in requests:  # every request has its own estimates, as in steady state
        controller.acceptance.observe_verified(request_id, gamma_max, rng.randint(0, gamma_max))
    timings = []
    for step in range(steps):
        requests = [(rid, context + 1) for rid, context in requests]
        plan = controller.plan(requests)
        timings.append(plan.decision_seconds)
        for rid, _ in requests[: max(1, batch // 8)]:  # some estimates move every step
            controller.acceptance.observe_verified(rid, gamma_max, rng.randint(0, gamma_max))
    return timings


def main() -> int:
    print(f"{'batch':>5}  {'p50 µs':>7}  {'p99 µs':>7}  {'p99 / 50 µs budget':>18}")
    for batch in (1, 4, 16, 64, 256):
        timings = sorted(measure(batch))
        p50, p99 = statistics.median(timings), timings[int(0.99 * len(timings))]
        print(f"{batch:>5}  {p50 * 1e6:7.1f}  {p99 * 1e6:7.1f}  {p99 / BUDGET_SECONDS:18.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
