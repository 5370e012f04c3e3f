"""`GammaController`: choose γ for this step and for each request, learn from the outcome.

Decision (adaptive): the batch-level optimum γ* = argmax_γ E(p, γ) / [t(B,γ+1,S)/t(B,1,S) + draft]
with t the step-cost model (the roofline, calibrated online and corrected per batch size, see
:mod:`server.controller.step_cost`), held unless another γ beats it by `hysteresis`. Then each
request gets the leading drafts worth their price: at the operating point the batch makes
S* tokens per unit step time, and one more draft position costs ΔR = R(γ*+1) − R(γ*) of a
step, so request i's k-th draft pays iff Π_{j≤k} p_ij > S* · ΔR. A request copying from its
prompt drafts more than one that is not.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import repeat

from roofline import HardwareSpec, ModelSpec
from roofline.planner import GammaPlanner
from server.controller.acceptance import GLOBAL_ROW, AcceptanceEstimates
from server.controller.policy import GammaPolicy
from server.controller.step_cost import StepCostModel


@dataclass(slots=True)
class ControllerConfig:
    gamma_max: int
    policy: GammaPolicy
    drafter_is_cheap: bool = True  # ngram: proposing costs ~nothing, so shadow drafts are free
    draft_cost_ratio: float = 0.0
    hysteresis: float = 0.03
    explore_probability: float = 0.02
    shadow_every_steps: int = 8
    min_draft_probability: float = 0.05
    request_rate: float = 0.25  # per-request acceptance EWMA weight per observation
    calibration_every_steps: int = 64
    calibration_window: int = 2048
    # A draft model runs a forward pass every step to keep its KV cache in step, even at γ = 0.
    # After this many steps in which nobody drafts, the drafter is paused altogether...
    pause_drafter_after_steps: int = 32
    # ...except for a probe of `draft_probe_steps` steps every `draft_probe_every_steps`.
    draft_probe_every_steps: int = 1024
    draft_probe_steps: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gamma_max < 1:
            raise ValueError("gamma_max must be ≥ 1")
        if not 0 <= self.explore_probability < 1 or not 0 <= self.hysteresis < 1:
            raise ValueError("explore_probability and hysteresis must be in [0, 1)")
        if not 0 < self.request_rate <= 1:
            raise ValueError("request_rate must be in (0, 1]")
        if not 2 <= self.draft_probe_steps < self.draft_probe_every_steps:
            raise ValueError("need 2 ≤ draft_probe_steps < draft_probe_every_steps")


@dataclass(slots=True)
class StepPlan:
    request_ids: list[str]  # the decoding requests planned, in the order given to `plan`
    gammas: list[int]  # drafts each of them verifies this step, in that order
    proposals_next_step: int
    gamma: int  # the most drafts any request verifies this step
    predicted_speedup: float
    decision_seconds: float = 0.0
    run_drafter: bool = True  # False: skip the draft model's forward pass this step
    explored: bool = False
    draft_threshold: float | None = None  # adaptive: a request's draft k is verified iff its survival beats this

    @property
    def gamma_by_request(self) -> dict[str, int]:
        """For reading (status, tests); the scheduler walks `gammas` beside its own request list."""
        return dict(zip(self.request_ids, self.gammas))


def speedup_curve(ratios: list[float], expected: list[float]) -> list[float]:
    """S(γ) = E(γ) / ratio(γ), E(γ) = 1 + Σ_{k≤γ} Π_{j≤k} p_j (Leviathan et al. 2023, Eq. 1 per position);
    `expected[γ]` = Σ_{k≤γ} Π_{j≤k} p_j."""
    return [(1.0 + drafts_kept) / ratio for drafts_kept, ratio in zip(expected, ratios)]


@dataclass(slots=True)
class GammaController:
    config: ControllerConfig
    model: ModelSpec
    hardware: HardwareSpec
    draft_model: ModelSpec | None = None
    acceptance: AcceptanceEstimates = field(init=False)
    costs: StepCostModel = field(init=False)
    _rng: random.Random = field(init=False)
    _steps: int = 0
    _held_gamma: int = 0
    _idle_steps: int = 0  # consecutive steps in which nobody drafted (draft-model drafters)
    last_gamma: int = 0
    last_predicted_speedup: float = 1.0

    def __post_init__(self) -> None:
        self.acceptance = AcceptanceEstimates(self.config.gamma_max, request_rate=self.config.request_rate)
        roofline = GammaPlanner(self.model, self.hardware, self.config.gamma_max, self.config.draft_cost_ratio,
                                draft_model=self.draft_model)
        self.costs = StepCostModel(roofline, window=self.config.calibration_window)
        self._rng = random.Random(self.config.seed)
        self.last_gamma = self._held_gamma = self.config.gamma_max

    @property
    def policy(self) -> GammaPolicy:
        return self.config.policy

    def set_policy(self, policy: GammaPolicy) -> None:
        self.config.policy = policy

    # ---- decision -------------------------------------------------------------------
    def plan(self, request_ids: list[str], seq_len: int) -> StepPlan:
        """`request_ids`: the decoding requests this step; `seq_len`: their mean context length."""
        started = time.perf_counter()
        self._steps += 1
        policy, gamma_max = self.config.policy, self.config.gamma_max
        batch = len(request_ids)
        if policy.kind == "off" or batch == 0:
            # No decoding request (prefill only): nothing to verify; keep drafting ready, unless
            # speculation is off or the draft model paused (then its prefill pass is saved too).
            idle = policy.kind == "off" or (policy.kind == "adaptive" and self.drafter_paused)
            gamma = 0 if policy.kind == "off" else self.last_gamma
            speedup = 1.0 if policy.kind == "off" else self.last_predicted_speedup
            plan = StepPlan(request_ids, [0] * batch, 0 if idle else gamma_max, gamma, speedup)
            plan.run_drafter = not idle or self.config.drafter_is_cheap
        elif policy.kind in ("fixed", "table"):
            gamma = min(policy.fixed_gamma if policy.kind == "fixed" else policy.table_gamma(batch), gamma_max)
            plan = StepPlan(request_ids, [gamma] * batch, gamma, gamma, self._priced(batch, seq_len)[1][gamma])
        else:
            plan = self._plan_adaptive(request_ids, seq_len)
            if not self.config.drafter_is_cheap:
                self._pause_idle_drafter(plan)
        plan.decision_seconds = time.perf_counter() - started
        self.last_gamma, self.last_predicted_speedup = plan.gamma, plan.predicted_speedup
        return plan

    def _priced(self, batch: int, seq_len: int) -> tuple[list[float], list[float]]:
        """(cost ratio by γ, predicted speedup by γ from the global estimates) for this batch."""
        ratios = self.costs.cost_ratios(batch, seq_len)
        return ratios, speedup_curve(ratios, self.acceptance.expected_by_row[GLOBAL_ROW].tolist())

    def _plan_adaptive(self, request_ids: list[str], seq_len: int) -> StepPlan:
        gamma_max, batch = self.config.gamma_max, len(request_ids)
        ratios, curve = self._priced(batch, seq_len)
        best = max(range(len(curve)), key=curve.__getitem__)
        held = min(self._held_gamma, gamma_max)
        gamma = self._held_gamma = best if curve[best] > curve[held] * (1.0 + self.config.hysteresis) else held
        if self._rng.random() < self.config.explore_probability:
            return self._explore(request_ids, curve)

        next_gamma = min(gamma + 1, gamma_max)
        marginal_cost = ratios[next_gamma] - ratios[next_gamma - 1]
        threshold = max(curve[gamma] * marginal_cost, self.config.min_draft_probability)
        acceptance = self.acceptance
        rows = acceptance.rows_of(request_ids)  # [batch]
        # survival decreases in k, so the drafts whose survival beats the threshold are the leading ones
        worth = (acceptance.survival_by_row.take(rows, axis=0) > threshold).sum(axis=1)  # [batch]
        expected = float(acceptance.expected_by_row.take(rows * (gamma_max + 1) + worth).sum())  # flat [row, worth]
        most = int(worth.max())
        # Predicted speedup of this allocation: tokens per request over the step's cost ratio,
        # interpolated at the mean number of drafts per request.
        mean_drafts = int(worth.sum()) / batch
        low = int(mean_drafts)
        ratio = ratios[low] if low == gamma_max else ratios[low] + (mean_drafts - low) * (ratios[low + 1] - ratios[low])
        speedup = (1.0 + expected / batch) / ratio
        return StepPlan(request_ids, worth.tolist(), self._proposals(most), most, speedup, draft_threshold=threshold)

    def _explore(self, request_ids: list[str], curve: list[float]) -> StepPlan:
        """Verify γ_e drafts for every γ_e-th request from a random start (~B/γ_e of them, each
        with chance 1/γ_e): calibration needs step times at several token counts and acceptance
        needs deep positions, at about one extra plain step's tokens (verifying γ_max for
        everyone would cost several steps at a large batch)."""
        gamma_max, batch = self.config.gamma_max, len(request_ids)
        gamma = self._rng.randint(1, gamma_max)
        gammas = [0] * batch
        start = self._rng.randrange(min(gamma, batch))
        gammas[start::gamma] = repeat(gamma, len(range(start, batch, gamma)))
        return StepPlan(request_ids, gammas, gamma_max, gamma, curve[gamma], explored=True)

    def _pause_idle_drafter(self, plan: StepPlan) -> None:
        """Draft models: pause the drafter once nobody has drafted for a while; probe it now and then.

        Paused, the draft model's KV cache misses the tokens of those steps, so its drafts for
        requests that lived through a pause are worse: the probes underestimate acceptance, which
        only delays turning speculation back on; verification keeps outputs exact either way.
        A paused drafter resumes only when the batch-level optimum (global estimates) drafts:
        one request's estimate, moved by a few lucky probe tokens, would restart the draft
        model's pass over the whole batch for the steps it takes to fall back."""
        config = self.config
        paused = self.drafter_paused
        if plan.explored and not paused:
            return  # exploring neither resets nor advances the idle count
        # self._held_gamma: the batch-level optimum _plan_adaptive just chose from the global estimates
        if plan.gamma > 0 and not plan.explored and (not paused or self._held_gamma > 0):
            self._idle_steps = 0
            return
        plan.gammas, plan.gamma = [0] * len(plan.gammas), 0  # no drafts exist
        self._idle_steps += 1
        paused_for = self._idle_steps - config.pause_drafter_after_steps
        if paused_for < 0:
            return
        phase = paused_for % config.draft_probe_every_steps
        probe_start = config.draft_probe_every_steps - config.draft_probe_steps
        if phase < probe_start:
            plan.run_drafter, plan.proposals_next_step = False, 0
        else:  # probe: the first step drafts, the following ones verify every draft
            plan.proposals_next_step = config.gamma_max
            if phase > probe_start:
                plan.gammas = [config.gamma_max] * len(plan.gammas)
                plan.gamma, plan.explored = config.gamma_max, True

    def _proposals(self, most_wanted: int) -> int:
        """How many drafts the drafter proposes for the next step."""
        if most_wanted > 0:
            return self.config.gamma_max if self.config.drafter_is_cheap else most_wanted
        # Nobody drafts: still propose now and then, so the acceptance estimates stay fresh
        # (shadow drafts: what would have been proposed, compared with what was generated).
        if self._steps % self.config.shadow_every_steps == 0:
            return self.config.gamma_max if self.config.drafter_is_cheap else 1
        return 0

    # ---- learning -------------------------------------------------------------------
    def predicted_step_seconds(self, batch: int, tokens: int, seq_len: int) -> tuple[float, float]:
        """(raw roofline seconds, calibrated seconds) for a decode step of `tokens` tokens."""
        return self.costs.step_seconds(batch, tokens, seq_len)

    def observe_step(self, batch: int, tokens: int, raw_predicted: float, observed: float) -> None:
        """A measured decode-only step; refits the step-cost model now and then."""
        self.costs.observe(batch, tokens, raw_predicted, observed)
        if self._steps % self.config.calibration_every_steps == 0:
            self.costs.refit()

    def recalibrate(self) -> None:
        self.costs.refit()

    @property
    def drafter_paused(self) -> bool:
        return not self.config.drafter_is_cheap and self._idle_steps >= self.config.pause_drafter_after_steps

    @property
    def status_steps(self) -> int:
        return self._steps

    def status(self) -> dict:
        return {
            "policy": str(self.config.policy),
            "gamma_max": self.config.gamma_max,
            "last_gamma": self.last_gamma,
            "predicted_speedup": self.last_predicted_speedup,
            "acceptance_by_position": self.acceptance.global_p.tolist(),
            "acceptance_rate": self.acceptance.mean_acceptance(),
            "tracked_requests": len(self.acceptance.tracked_request_ids()),
            "calibration": self.costs.status(),
            "drafter_paused": self.drafter_paused,
            "model": self.model.name,
            "hardware": self.hardware.name,
            "steps": self._steps,
        }
