"""`GammaController`: choose γ for this step and for each request, learn from the outcome.

Decision (adaptive): the batch-level optimum γ* = argmax_γ E(p, γ) / [C(B,γ+1,S)/C(B,1,S) + draft]
over the calibrated roofline, held unless another γ beats it by `hysteresis`. Then each
request gets the leading drafts worth their price: at the operating point the batch makes
S* tokens per unit step time, and one more draft position costs ΔR = R(γ*+1) − R(γ*) of a
step, so request i's k-th draft pays iff Π_{j≤k} p_ij > S* · ΔR. A request copying from its
prompt drafts more than one that is not.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field

from roofline import HardwareSpec, ModelSpec
from roofline.calibration import fit_step_model
from roofline.planner import GammaPlanner
from server.controller.acceptance import AcceptanceEstimates, survival_of
from server.controller.policy import GammaPolicy


@dataclass(slots=True)
class ControllerConfig:
    gamma_max: int
    policy: GammaPolicy
    drafter_is_cheap: bool = True  # ngram: proposing costs ~nothing, so shadow drafts are free
    draft_cost_ratio: float = 0.0
    hysteresis: float = 0.03
    explore_probability: float = 0.04
    shadow_every_steps: int = 8
    min_draft_probability: float = 0.05
    calibration_every_steps: int = 64
    calibration_window: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gamma_max < 1:
            raise ValueError("gamma_max must be ≥ 1")
        if not 0 <= self.explore_probability < 1 or not 0 <= self.hysteresis < 1:
            raise ValueError("explore_probability and hysteresis must be in [0, 1)")


@dataclass(slots=True)
class StepPlan:
    gamma_by_request: dict[str, int]
    proposals_next_step: int
    gamma: int  # the most drafts any request verifies this step
    predicted_speedup: float
    decision_seconds: float = 0.0


@dataclass(slots=True)
class Calibration:
    overhead_seconds: float = 0.0
    per_token_seconds: float = 0.0
    scale: float = 1.0
    samples: int = 0


@dataclass(slots=True)
class GammaController:
    config: ControllerConfig
    model: ModelSpec
    hardware: HardwareSpec
    draft_model: ModelSpec | None = None
    acceptance: AcceptanceEstimates = field(init=False)
    calibration: Calibration = field(default_factory=Calibration)
    _raw_planner: GammaPlanner = field(init=False)
    _planner: GammaPlanner = field(init=False)
    _samples: deque = field(init=False)
    _rng: random.Random = field(init=False)
    _steps: int = 0
    _held_gamma: int = 0
    last_gamma: int = 0
    last_predicted_speedup: float = 1.0

    def __post_init__(self) -> None:
        self.acceptance = AcceptanceEstimates(self.config.gamma_max)
        self._raw_planner = GammaPlanner(
            self.model, self.hardware, self.config.gamma_max, self.config.draft_cost_ratio,
            draft_model=self.draft_model,
        )
        self._planner = self._raw_planner
        self._samples = deque(maxlen=self.config.calibration_window)
        self._rng = random.Random(self.config.seed)
        self.last_gamma = self._held_gamma = self.config.gamma_max

    @property
    def policy(self) -> GammaPolicy:
        return self.config.policy

    def set_policy(self, policy: GammaPolicy) -> None:
        self.config.policy = policy

    # ---- decision -------------------------------------------------------------------
    def plan(self, requests: list[tuple[str, int]]) -> StepPlan:
        """`requests`: (request id, context length) of the decoding requests this step."""
        started = time.perf_counter()
        self._steps += 1
        policy, gamma_max = self.config.policy, self.config.gamma_max
        batch = len(requests)
        if policy.kind == "off" or batch == 0:
            # No decoding request (prefill only): nothing to verify; keep drafting ready.
            gamma = 0 if policy.kind == "off" else self.last_gamma
            speedup = 1.0 if policy.kind == "off" else self.last_predicted_speedup
            plan = StepPlan({rid: 0 for rid, _ in requests}, 0 if policy.kind == "off" else gamma_max, gamma, speedup)
        elif policy.kind in ("fixed", "table"):
            gamma = min(policy.fixed_gamma if policy.kind == "fixed" else policy.table_gamma(batch), gamma_max)
            plan = StepPlan({rid: gamma for rid, _ in requests}, gamma, gamma,
                            self._predicted_speedup(batch, requests, gamma))
        else:
            plan = self._plan_adaptive(requests)
        plan.decision_seconds = time.perf_counter() - started
        self.last_gamma, self.last_predicted_speedup = plan.gamma, plan.predicted_speedup
        return plan

    def _plan_adaptive(self, requests: list[tuple[str, int]]) -> StepPlan:
        gamma_max, batch = self.config.gamma_max, len(requests)
        seq_len = sum(context for _, context in requests) // batch
        curve = self._planner.speedup_curve(batch, seq_len, self.acceptance.global_p)
        best = max(range(len(curve)), key=curve.__getitem__)
        held = min(self._held_gamma, gamma_max)
        gamma = self._held_gamma = best if curve[best] > curve[held] * (1.0 + self.config.hysteresis) else held
        if self._rng.random() < self.config.explore_probability:
            # Calibration needs step times at several query lengths, not only the chosen one.
            gamma = self._rng.randint(0, gamma_max)
            return StepPlan({rid: gamma for rid, _ in requests}, gamma_max, gamma, curve[gamma])

        ratios = self._planner.cost_ratios(batch, seq_len)
        next_gamma = min(gamma + 1, gamma_max)
        marginal_cost = ratios[next_gamma] - ratios[next_gamma - 1]
        threshold = max(curve[gamma] * marginal_cost, self.config.min_draft_probability)
        global_survival = survival_of(self.acceptance.global_p)
        gamma_by_request, most, drafts, expected = {}, 0, 0, 0.0
        for request_id, _ in requests:
            survival = self.acceptance.survival(request_id) or global_survival
            worth = 0
            while worth < gamma_max and survival[worth] > threshold:  # survival decreases in k
                expected += survival[worth]
                worth += 1
            gamma_by_request[request_id] = worth
            drafts += worth
            most = max(most, worth)
        # Predicted speedup of this allocation: tokens per request over the step's cost ratio,
        # interpolated at the mean number of drafts per request.
        mean_drafts = drafts / batch
        low = int(mean_drafts)
        ratio = ratios[low] if low == gamma_max else ratios[low] + (mean_drafts - low) * (ratios[low + 1] - ratios[low])
        speedup = (1.0 + expected / batch) / ratio
        return StepPlan(gamma_by_request, self._proposals(most), most, speedup)

    def _proposals(self, most_wanted: int) -> int:
        """How many drafts the drafter proposes for the next step."""
        if most_wanted > 0:
            return self.config.gamma_max if self.config.drafter_is_cheap else most_wanted
        # Nobody drafts: still propose now and then, so the acceptance estimates stay fresh
        # (shadow drafts: what would have been proposed, compared with what was generated).
        if self._steps % self.config.shadow_every_steps == 0:
            return self.config.gamma_max if self.config.drafter_is_cheap else 1
        return 0

    def _predicted_speedup(self, batch: int, requests: list[tuple[str, int]], gamma: int) -> float:
        seq_len = sum(context for _, context in requests) // batch
        return self._planner.speedup_curve(batch, seq_len, self.acceptance.global_p)[gamma]

    # ---- learning -------------------------------------------------------------------
    def predicted_step_seconds(self, batch: int, tokens: int, seq_len: int) -> tuple[float, float]:
        """(raw roofline seconds, calibrated seconds) for a decode step of `tokens` tokens."""
        query_len = tokens / batch
        raw = self._raw_planner.step_seconds(batch, query_len, seq_len)
        return raw, self._planner.step_seconds(batch, query_len, seq_len)

    def observe_step(self, batch: int, tokens: int, seq_len: int, raw_predicted: float, observed: float) -> None:
        """A measured decode-only step; refits t0, per-token cost and scale now and then."""
        self._samples.append((tokens, raw_predicted, observed))
        if len(self._samples) >= 16 and self._steps % self.config.calibration_every_steps == 0:
            self.recalibrate()

    def recalibrate(self) -> None:
        fit = fit_step_model(self._samples)
        self.calibration = Calibration(fit.overhead_seconds, fit.per_token_seconds, fit.scale, len(self._samples))
        self._planner = self._raw_planner.with_calibration(
            overhead_seconds=fit.overhead_seconds, scale=fit.scale, per_token_seconds=fit.per_token_seconds
        )

    @property
    def status_steps(self) -> int:
        return self._steps

    def status(self) -> dict:
        return {
            "policy": str(self.config.policy),
            "gamma_max": self.config.gamma_max,
            "last_gamma": self.last_gamma,
            "predicted_speedup": self.last_predicted_speedup,
            "acceptance_by_position": list(self.acceptance.global_p),
            "acceptance_rate": self.acceptance.mean_acceptance(),
            "tracked_requests": len(self.acceptance.by_request),
            "calibration": {
                "overhead_seconds": self.calibration.overhead_seconds,
                "per_token_seconds": self.calibration.per_token_seconds,
                "scale": self.calibration.scale,
                "samples": self.calibration.samples,
            },
            "model": self.model.name,
            "hardware": self.hardware.name,
            "steps": self._steps,
        }
