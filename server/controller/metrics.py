"""What the controller did each step (`StepStats`) and its Prometheus sink.

The sink runs in vLLM's engine-core process; with PROMETHEUS_MULTIPROC_DIR set (the gateway
sets it before anything imports prometheus_client) the gateway's `/metrics` collects it.
Counters are named without `_total` here; the exposition adds it. Useful ratios:

    mean accepted tokens per step:  rate(specgate_accepted_tokens_per_step_sum[5m])
                                    / rate(specgate_accepted_tokens_per_step_count[5m])
    mean γ:                         rate(specgate_gamma_chosen_sum[5m]) / rate(specgate_gamma_chosen_count[5m])
    calibration error:              rate(specgate_observed_step_seconds_sum[5m])
                                    / rate(specgate_predicted_step_seconds_sum[5m])
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Gauge, Histogram

GAMMA_BUCKETS = tuple(float(g) for g in range(17))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEP_SECONDS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
DECISION_SECONDS_BUCKETS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2)
ACCEPTED_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(slots=True)
class StepStats:
    gamma: int
    batch_size: int
    predicted_speedup: float
    decision_seconds: float
    accepted_tokens: int | None = None


class PrometheusSink:
    def __init__(self, model_name: str):
        labels = ["model_name"]
        self._label = {"model_name": model_name}
        self.gamma_chosen = Histogram("specgate_gamma_chosen", "γ chosen for the batch per scheduling step.",
                                      labels, buckets=GAMMA_BUCKETS)
        self.batch_size = Histogram("specgate_batch_size", "Decoding requests per step (steps with any).",
                                    labels, buckets=BATCH_BUCKETS)
        self.acceptance_rate = Gauge("specgate_acceptance_rate",
                                     "Estimated per-draft-token acceptance rate (EWMA, global).",
                                     labels, multiprocess_mode="mostrecent")
        self.acceptance_by_position = Gauge(
            "specgate_acceptance_rate_by_position",
            "Estimated conditional acceptance p_k of draft position k given 1..k-1 accepted (EWMA).",
            [*labels, "position"], multiprocess_mode="mostrecent")
        self.predicted_speedup = Gauge("specgate_predicted_speedup",
                                       "Roofline-predicted speedup of the chosen γ over no speculation.",
                                       labels, multiprocess_mode="mostrecent")
        self.predicted_goodput = Gauge("specgate_predicted_goodput_tokens_per_second",
                                       "Predicted output tokens per second of the batch at the chosen γ.",
                                       labels, multiprocess_mode="mostrecent")
        self.predicted_step = Histogram("specgate_predicted_step_seconds", "Calibrated predicted step time.",
                                        labels, buckets=STEP_SECONDS_BUCKETS)
        self.observed_step = Histogram("specgate_observed_step_seconds",
                                       "Measured decode step time: engine loop period, schedule to schedule.",
                                       labels, buckets=STEP_SECONDS_BUCKETS)
        self.accepted_tokens = Histogram("specgate_accepted_tokens_per_step",
                                         "Draft tokens accepted in one step, whole batch.", labels,
                                         buckets=ACCEPTED_BUCKETS)
        self.decision_seconds = Histogram("specgate_decision_seconds", "Controller decision time per step.",
                                          labels, buckets=DECISION_SECONDS_BUCKETS)
        self.policy_info = Gauge("specgate_gamma_policy_info", "The γ policy in force (value 1).",
                                 [*labels, "policy"], multiprocess_mode="mostrecent")
        self._policy: str | None = None
        # This model's child of each series, looked up on first use (so a series appears only
        # once recorded) and kept: `labels()` costs µs per call, and the sink records several
        # series every step inside vLLM's scheduler loop.
        self._children: dict = {}

    def _child(self, metric, position: int | None = None):
        key = (metric, position)
        child = self._children.get(key)
        if child is None:
            labels = self._label if position is None else {**self._label, "position": str(position)}
            child = self._children[key] = metric.labels(**labels)
        return child

    def record_policy(self, policy: str) -> None:
        if policy == self._policy:
            return
        if self._policy is not None:
            self.policy_info.labels(policy=self._policy, **self._label).set(0)
        self.policy_info.labels(policy=policy, **self._label).set(1)
        self._policy = policy

    def record_step(self, stats: StepStats) -> None:
        child = self._child
        child(self.gamma_chosen).observe(stats.gamma)
        if stats.batch_size:  # prefill-only steps have no decoding batch
            child(self.batch_size).observe(stats.batch_size)
        child(self.predicted_speedup).set(stats.predicted_speedup)
        child(self.decision_seconds).observe(stats.decision_seconds)
        if stats.accepted_tokens is not None:
            child(self.accepted_tokens).observe(stats.accepted_tokens)

    def record_step_seconds(self, predicted: float | None, observed: float,
                            predicted_goodput_tokens_per_second: float | None = None) -> None:
        """A decode-only step's measured time (engine loop period) and the controller's prediction."""
        child = self._child
        child(self.observed_step).observe(observed)
        if predicted is not None:
            child(self.predicted_step).observe(predicted)
        if predicted_goodput_tokens_per_second is not None:
            child(self.predicted_goodput).set(predicted_goodput_tokens_per_second)

    def record_plain_step(self, batch_size: int) -> None:
        """A step of an engine without speculation (its time comes through `record_step_seconds`)."""
        self._child(self.batch_size).observe(batch_size)

    def record_acceptance(self, rate: float, by_position: list[float]) -> None:
        self._child(self.acceptance_rate).set(rate)
        for position, value in enumerate(by_position, start=1):
            self._child(self.acceptance_by_position, position).set(value)
