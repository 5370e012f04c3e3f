"""The step-time model the controller prices γ with: the calibrated roofline, corrected per batch size.

Global fit, refitted every `refit_every_steps` over the last `window` decode-only steps
(:func:`roofline.calibration.fit_step_model`):

    measured ≈ t0 + t_token · T + scale · roofline(B, q, S)        T = tokens in the step

One such line cannot be right at every batch size on every machine (on this CPU it priced
verification at batch 64 as ~1.7x dearer than it was). So per batch bucket (B in [2^k, 2^(k+1)))
what the global fit still misses is fitted as a line in T, by ridge regression toward zero:

    residual ≈ a_k + c_k · T / T_k        T_k: the bucket's mean tokens per step

With few samples in a bucket the roofline stands; with many, the measurements do
(`ridge_samples` is how many samples the prior is worth).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from roofline.calibration import StepModelFit, fit_step_model
from roofline.planner import GammaPlanner

MIN_COST_FRACTION = 0.1  # a correction never prices a step below this share of the roofline's price


def batch_bucket(batch: int) -> int:
    return batch.bit_length()


@dataclass(slots=True)
class BucketCorrection:
    offset_seconds: float = 0.0
    slope_seconds: float = 0.0  # per reference_tokens tokens
    reference_tokens: float = 1.0
    samples: int = 0

    def corrected(self, seconds: float, tokens: float) -> float:
        """`seconds` predicted for a step of `tokens` tokens, corrected (never below a tenth)."""
        correction = self.offset_seconds + self.slope_seconds * tokens / self.reference_tokens
        return max(seconds + correction, MIN_COST_FRACTION * seconds)


def ridge_line(points: list[tuple[float, float]], ridge: float) -> tuple[float, float]:
    """(a, c) minimising Σ (y − a − c·x)² + ridge · (a² + c²)."""
    n = len(points)
    sx = sum(x for x, _ in points)
    sy = sum(y for _, y in points)
    sxx = sum(x * x for x, _ in points)
    sxy = sum(x * y for x, y in points)
    # [[n + λ, Σx], [Σx, Σx² + λ]] · [a, c] = [Σy, Σxy]
    a11, a12, a22 = n + ridge, sx, sxx + ridge
    determinant = a11 * a22 - a12 * a12
    if determinant <= 0.0:
        return 0.0, 0.0
    return (a22 * sy - a12 * sxy) / determinant, (a11 * sxy - a12 * sy) / determinant


@dataclass(slots=True)
class StepCostModel:
    planner: GammaPlanner  # the uncalibrated roofline: the prior
    window: int = 2048
    bucket_window: int = 256
    ridge_samples: float = 16.0
    min_samples: int = 16
    fit: StepModelFit = field(default_factory=lambda: StepModelFit(0.0, 0.0, 1.0))
    calibrated: GammaPlanner = field(init=False)
    corrections: dict[int, BucketCorrection] = field(default_factory=dict)
    _samples: deque = field(init=False)
    _by_bucket: dict[int, deque] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.calibrated = self.planner
        self._samples = deque(maxlen=self.window)

    # ---- prediction (per step: a cached tuple plus a line per γ) ----------------------
    def step_costs(self, batch: int, seq_len: int) -> list[float]:
        """Predicted seconds of a step verifying γ drafts per request, γ = 0..γ_max."""
        costs = self.calibrated.step_costs(batch, seq_len)
        correction = self.corrections.get(batch_bucket(batch))
        if correction is None:
            return list(costs)
        return [correction.corrected(cost, batch * (gamma + 1)) for gamma, cost in enumerate(costs)]

    def decode_step_seconds(self, batch: int, seq_len: int) -> float:
        """Predicted seconds of a step verifying no drafts: `step_costs(...)[0]` without the list."""
        cost = self.calibrated.step_costs(batch, seq_len)[0]
        correction = self.corrections.get(batch_bucket(batch))
        return cost if correction is None else correction.corrected(cost, batch)

    def cost_ratios(self, batch: int, seq_len: int) -> list[float]:
        costs = self.step_costs(batch, seq_len)
        return [cost / costs[0] for cost in costs]

    def step_seconds(self, batch: int, tokens: int, seq_len: int) -> tuple[float, float]:
        """(raw roofline seconds, corrected prediction) for a decode step of `tokens` tokens."""
        query_len = tokens / batch
        raw = self.planner.step_seconds(batch, query_len, seq_len)
        predicted = self.calibrated.step_seconds(batch, query_len, seq_len)
        correction = self.corrections.get(batch_bucket(batch))
        return raw, predicted if correction is None else correction.corrected(predicted, tokens)

    # ---- learning ---------------------------------------------------------------------
    def observe(self, batch: int, tokens: int, raw_seconds: float, observed_seconds: float) -> None:
        sample = (tokens, raw_seconds, observed_seconds)
        self._samples.append(sample)
        bucket = self._by_bucket.get(batch_bucket(batch))
        if bucket is None:
            bucket = self._by_bucket[batch_bucket(batch)] = deque(maxlen=self.bucket_window)
        bucket.append(sample)

    def refit(self) -> None:
        if len(self._samples) < self.min_samples:
            return
        fit = self.fit = fit_step_model(self._samples)
        self.calibrated = self.planner.with_calibration(
            overhead_seconds=fit.overhead_seconds, scale=fit.scale, per_token_seconds=fit.per_token_seconds
        )
        corrections = {}
        for bucket, samples in self._by_bucket.items():
            reference = sum(tokens for tokens, _, _ in samples) / len(samples)
            residuals = [
                (tokens / reference,
                 observed - fit.overhead_seconds - fit.per_token_seconds * tokens - fit.scale * raw)
                for tokens, raw, observed in samples
            ]
            offset, slope = ridge_line(residuals, self.ridge_samples)
            corrections[bucket] = BucketCorrection(offset, slope, reference, len(samples))
        self.corrections = corrections

    def status(self) -> dict:
        return {
            "overhead_seconds": self.fit.overhead_seconds,
            "per_token_seconds": self.fit.per_token_seconds,
            "scale": self.fit.scale,
            "samples": len(self._samples),
            "by_batch_bucket": {
                f"{1 << (bucket - 1)}-{(1 << bucket) - 1}": {
                    "offset_seconds": c.offset_seconds,
                    "seconds_per_token": c.slope_seconds / c.reference_tokens,
                    "samples": c.samples,
                }
                for bucket, c in sorted(self.corrections.items())
            },
        }
