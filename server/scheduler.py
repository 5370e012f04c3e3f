"""`SpecgateScheduler`: vLLM's V1 scheduler with the γ controller in the loop.

It overrides as little as it can. Before vLLM schedules a step it trims each decoding
request's draft tokens to the controller's γ for that request (vLLM then schedules only
those); after the step it sets vLLM's own `num_spec_tokens_to_schedule` (how many drafts to
propose next); when the model runner reports back it feeds accepted counts and shadow drafts
to the controller, and at the next `schedule()` the step's measured time. Everything else is vLLM's.

A step's time is the engine loop's period, from one `schedule()` to the next, taken only when
the engine had work left (so it went straight on): that is what a step costs the batch, the
drafting and bookkeeping around the forward pass included. `SPECGATE_STEP_LOG=path.csv`
appends one line per step (batch, tokens, drafts, period), to fit other step models offline.

Use it from plain vLLM:
    --scheduler-cls server.scheduler.SpecgateScheduler --no-async-scheduling \
    --additional-config '{"specgate": {"gamma_policy": "adaptive"}}'
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass

from vllm.v1.core.sched.scheduler import Scheduler

from roofline import load_hardware, load_model
from server.controller.controller import ControllerConfig, GammaController, StepPlan
from server.controller.hardware import detect_hardware_preset
from server.controller.metrics import PrometheusSink, StepStats
from server.controller.policy import GammaPolicy
from server.vllm_plugin import SKIP_DRAFTER_FIELD

logger = logging.getLogger("specgate.scheduler")
CHEAP_DRAFTERS = ("ngram", "suffix")
CONTROLLER_OPTIONS = {"draft_cost_ratio": float, "request_rate": float, "seed": int}  # else ControllerConfig's defaults
FORGET_EVERY_STEPS = 64
ACCEPTANCE_METRICS_EVERY_STEPS = 8


STEP_LOG_FIELDS = ("entered_seconds", "policy", "batch", "tokens", "seq_len", "gamma", "verified_drafts", "proposals",
                   "run_drafter", "decode_only", "accepted", "window_seconds", "period_seconds")


def open_step_log(path: str):
    """A CSV writer appending to `path`, line-buffered; the header goes only into a new file (an
    engine restarting appends under the header the log already has)."""
    log = open(path, "a", newline="", buffering=1)  # noqa: SIM115
    writer = csv.writer(log)
    if log.tell() == 0:
        writer.writerow(STEP_LOG_FIELDS)
    return writer


@dataclass(slots=True)
class PendingStep:
    plan: StepPlan | None  # None: speculation off in this engine, only timed
    shadow: dict[str, tuple[int, int]]  # request → (position, first unverified draft token)
    batch: int
    tokens: int
    verified: int  # draft tokens verified
    seq_len: int
    decode_only: bool
    entered: float  # perf_counter at schedule()'s start
    window: float = 0.0  # schedule() start to update_from_output()
    accepted: int = 0

    def log_row(self, policy: str, period: float | None) -> tuple:
        plan = self.plan
        return (f"{self.entered:.6f}", policy, self.batch, self.tokens, self.seq_len, plan.gamma if plan else 0, self.verified,
                plan.proposals_next_step if plan else 0, int(plan.run_drafter) if plan else 0, int(self.decode_only),
                self.accepted, f"{self.window:.6f}", "" if period is None else f"{period:.6f}")


def _served_name(vllm_config) -> str:
    served_name = vllm_config.model_config.served_model_name
    return served_name if isinstance(served_name, str) else served_name[0]


def build_controller(vllm_config) -> tuple[GammaController | None, PrometheusSink]:
    """The controller and its metrics sink; without speculation only the sink (step times)."""
    spec = vllm_config.speculative_config
    if spec is None:
        return None, PrometheusSink(_served_name(vllm_config))
    options = (vllm_config.additional_config or {}).get("specgate", {})
    hardware_name = options.get("hardware") or detect_hardware_preset()
    config = ControllerConfig(
        gamma_max=spec.num_speculative_tokens,
        policy=GammaPolicy.parse(options.get("gamma_policy", "adaptive")),
        drafter_is_cheap=spec.method in CHEAP_DRAFTERS,
        **{name: cast(options[name]) for name, cast in CONTROLLER_OPTIONS.items() if name in options},
    )
    draft_model = load_model(spec.model) if spec.method == "draft_model" and spec.model else None
    controller = GammaController(config, load_model(vllm_config.model_config.model),
                                 load_hardware(hardware_name), draft_model)
    sink = PrometheusSink(_served_name(vllm_config))
    sink.record_policy(str(config.policy))
    logger.info("specgate controller: policy %s, γ ≤ %d, hardware %s", config.policy, config.gamma_max, hardware_name)
    return controller, sink


class SpecgateScheduler(Scheduler):
    def __init__(self, vllm_config, *args, **kwargs):
        super().__init__(vllm_config, *args, **kwargs)
        self.controller, self.sink = build_controller(vllm_config)
        self._pending: PendingStep | None = None  # scheduled, not yet reported back
        self._timing: PendingStep | None = None  # reported back; its period ends at the next schedule()
        self.expects_draft_tokens = True  # read by server.vllm_plugin's EngineCore.post_step patch
        log_path = os.environ.get("SPECGATE_STEP_LOG")
        self._step_log = open_step_log(log_path) if log_path else None

    def schedule(self, *args, **kwargs):
        entered = time.perf_counter()
        if self._timing is not None:
            self._observe_period(self._timing, entered - self._timing.entered)
            self._timing = None
        decoding = [r for r in self.running if r.num_computed_tokens >= r.num_prompt_tokens]
        seq_len = sum(r.num_computed_tokens for r in decoding) // len(decoding) if decoding else 0
        if self.controller is None:
            output = super().schedule(*args, **kwargs)
            self._pending = self._pending_step(None, {}, decoding, seq_len, output, entered)
            return output
        plan = self.controller.plan([r.request_id for r in decoding], seq_len)
        shadow = {}
        for request, keep in zip(decoding, plan.gammas):
            drafts = request.spec_token_ids
            if len(drafts) > keep:
                shadow[request.request_id] = (keep, drafts[keep])
                request.spec_token_ids = drafts[:keep]

        output = super().schedule(*args, **kwargs)

        output.num_spec_tokens_to_schedule = plan.proposals_next_step
        setattr(output, SKIP_DRAFTER_FIELD, not plan.run_drafter)  # read by server.vllm_plugin's runner patch
        # A step that proposes nothing leaves nothing to take; a skipped drafter leaves only
        # placeholders, so not taking them also keeps them out of the next step.
        self.expects_draft_tokens = plan.run_drafter and plan.proposals_next_step > 0
        self._pending = self._pending_step(plan, shadow, decoding, seq_len, output, entered)
        return output

    @staticmethod
    def _pending_step(plan, shadow, decoding, seq_len: int, output, entered: float) -> PendingStep:
        verified = sum(len(d) for d in output.scheduled_spec_decode_tokens.values())
        decode_only = (not output.scheduled_new_reqs and len(output.num_scheduled_tokens) == len(decoding)
                       and output.total_num_scheduled_tokens == len(decoding) + verified)
        return PendingStep(plan, shadow, len(decoding), output.total_num_scheduled_tokens, verified, seq_len,
                           decode_only and bool(decoding), entered)

    def update_from_output(self, scheduler_output, model_runner_output):
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.window = time.perf_counter() - pending.entered
            if self.controller is not None:
                self._learn(pending, scheduler_output, model_runner_output)
            elif pending.batch:
                self.sink.record_plain_step(pending.batch)
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        if pending is not None:
            # Only a busy engine goes straight from here to the next schedule(): an idle one waits.
            if pending.decode_only and self.has_unfinished_requests():
                self._timing = pending
            elif self._step_log is not None:
                self._step_log.writerow(pending.log_row(self._policy_name(), None))
        return outputs

    def _policy_name(self) -> str:
        return "none" if self.controller is None else str(self.controller.policy)

    def _observe_period(self, step: PendingStep, period: float) -> None:
        """A decode-only step's time, schedule() to schedule(): the controller learns from it."""
        if self._step_log is not None:
            self._step_log.writerow(step.log_row(self._policy_name(), period))
        controller = self.controller
        if controller is None:
            self.sink.record_step_seconds(None, period)
            return
        raw, predicted = controller.predicted_step_seconds(step.batch, step.tokens, step.seq_len)
        controller.observe_step(step.batch, step.tokens, raw, period)
        # speedup = E(γ) / [t(γ) / t(1)], so the batch emits B · speedup / t(1) tokens per second.
        plain_step = controller.costs.decode_step_seconds(step.batch, step.seq_len)
        goodput = step.batch * step.plan.predicted_speedup / plain_step
        self.sink.record_step_seconds(predicted, period, goodput)

    def _learn(self, pending: PendingStep, scheduler_output, model_runner_output) -> None:
        controller, acceptance = self.controller, self.controller.acceptance
        index, sampled = model_runner_output.req_id_to_index, model_runner_output.sampled_token_ids
        outcomes: dict[str, list[int]] = {}  # request → [drafts verified, accepted]
        accepted_total = 0
        for request_id, drafts in scheduler_output.scheduled_spec_decode_tokens.items():
            row = index.get(request_id)
            generated = sampled[row] if sampled and row is not None else None
            if generated:
                accepted = len(generated) - 1
                outcomes[request_id] = [len(drafts), accepted]
                accepted_total += accepted
        for request_id, (position, token) in pending.shadow.items():
            row = index.get(request_id)
            generated = sampled[row] if sampled and row is not None else None
            # The shadow draft at `position` was reached only if every verified draft before it
            # held (so exactly `position` were verified): it counts as one more verified draft.
            if generated and len(generated) - 1 == position:
                outcome = outcomes.setdefault(request_id, [0, 0])
                outcome[0] += 1
                outcome[1] += token == generated[-1]
        if outcomes:
            drafted, accepted = zip(*outcomes.values())
            acceptance.observe(list(outcomes), drafted, accepted)

        pending.accepted = accepted_total
        self.sink.record_step(StepStats(pending.plan.gamma, pending.batch, pending.plan.predicted_speedup,
                                        pending.plan.decision_seconds, accepted_tokens=accepted_total))
        steps = controller.status_steps
        if steps % ACCEPTANCE_METRICS_EVERY_STEPS == 0:
            self.sink.record_acceptance(acceptance.mean_acceptance(), acceptance.global_p.tolist())
        if steps % FORGET_EVERY_STEPS == 0:
            for request_id in [r for r in acceptance.tracked_request_ids() if r not in self.requests]:
                acceptance.forget(request_id)

    def handle_specgate_control(self, payload: str) -> str:
        """The gateway's `/v1/speculative` talks to this (EngineCore utility call, JSON in and out)."""
        if self.controller is None:
            return json.dumps({"error": "speculative decoding is off in this engine"})
        request = json.loads(payload)
        if request.get("action") == "set_policy":
            try:
                policy = GammaPolicy.parse(request["policy"])
            except (KeyError, ValueError) as error:
                return json.dumps({"error": str(error)})
            self.controller.set_policy(policy)
            self.sink.record_policy(str(policy))
        return json.dumps(self.controller.status())
