"""`SpecgateScheduler`: vLLM's V1 scheduler with the γ controller in the loop.

It overrides as little as it can. Before vLLM schedules a step it trims each decoding
request's draft tokens to the controller's γ for that request (vLLM then schedules only
those); after the step it sets vLLM's own `num_spec_tokens_to_schedule` (how many drafts to
propose next); when the model runner reports back it feeds accepted counts, shadow drafts and
the measured step time to the controller. Everything else is vLLM's.

Use it from plain vLLM:
    --scheduler-cls server.scheduler.SpecgateScheduler \
    --additional-config '{"specgate": {"gamma_policy": "adaptive"}}'
"""

from __future__ import annotations

import json
import logging
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
FORGET_EVERY_STEPS = 64
ACCEPTANCE_METRICS_EVERY_STEPS = 8


@dataclass(slots=True)
class PendingStep:
    plan: StepPlan | None  # None: speculation off in this engine, only timed
    shadow: dict[str, tuple[int, int]]  # request → (position, first unverified draft token)
    batch: int
    tokens: int
    seq_len: int
    decode_only: bool
    started: float


def _served_name(vllm_config) -> str:
    served_name = vllm_config.model_config.served_model_name
    return served_name if isinstance(served_name, str) else served_name[0]


def build_controller(vllm_config) -> tuple[GammaController | None, PrometheusSink]:
    """The controller and its metrics sink; without speculation only the sink (step times)."""
    spec = vllm_config.speculative_config
    if spec is None:
        return None, PrometheusSink(_served_name(vllm_config), gamma_max=0)
    options = (vllm_config.additional_config or {}).get("specgate", {})
    hardware_name = options.get("hardware") or detect_hardware_preset()
    config = ControllerConfig(
        gamma_max=spec.num_speculative_tokens,
        policy=GammaPolicy.parse(options.get("gamma_policy", "adaptive")),
        drafter_is_cheap=spec.method in CHEAP_DRAFTERS,
        draft_cost_ratio=float(options.get("draft_cost_ratio", 0.0)),
        seed=int(options.get("seed", 0)),
    )
    draft_model = load_model(spec.model) if spec.method == "draft_model" and spec.model else None
    controller = GammaController(config, load_model(vllm_config.model_config.model),
                                 load_hardware(hardware_name), draft_model)
    sink = PrometheusSink(_served_name(vllm_config), config.gamma_max)
    sink.record_policy(str(config.policy))
    logger.info("specgate controller: policy %s, γ ≤ %d, hardware %s", config.policy, config.gamma_max, hardware_name)
    return controller, sink


class SpecgateScheduler(Scheduler):
    def __init__(self, vllm_config, *args, **kwargs):
        super().__init__(vllm_config, *args, **kwargs)
        self.controller, self.sink = build_controller(vllm_config)
        self._pending: PendingStep | None = None
        self.expects_draft_tokens = True  # read by server.vllm_plugin's EngineCore.post_step patch

    def schedule(self, *args, **kwargs):
        decoding = [r for r in self.running if r.num_computed_tokens >= r.num_prompt_tokens]
        if self.controller is None:
            output = super().schedule(*args, **kwargs)
            self._pending = self._pending_step(None, {}, decoding, output)
            return output
        plan = self.controller.plan([(r.request_id, r.num_computed_tokens) for r in decoding])
        shadow = {}
        for request in decoding:
            drafts = request.spec_token_ids
            keep = plan.gamma_by_request.get(request.request_id, 0)
            if len(drafts) > keep:
                shadow[request.request_id] = (keep, drafts[keep])
                request.spec_token_ids = drafts[:keep]

        output = super().schedule(*args, **kwargs)

        output.num_spec_tokens_to_schedule = plan.proposals_next_step
        setattr(output, SKIP_DRAFTER_FIELD, not plan.run_drafter)  # read by server.vllm_plugin's runner patch
        # A step that proposes nothing leaves nothing to take; a skipped drafter leaves only
        # placeholders, so not taking them also keeps them out of the next step.
        self.expects_draft_tokens = plan.run_drafter and plan.proposals_next_step > 0
        self._pending = self._pending_step(plan, shadow, decoding, output)
        return output

    @staticmethod
    def _pending_step(plan, shadow, decoding, output) -> PendingStep:
        verified = sum(len(d) for d in output.scheduled_spec_decode_tokens.values())
        decode_only = (not output.scheduled_new_reqs and len(output.num_scheduled_tokens) == len(decoding)
                       and output.total_num_scheduled_tokens == len(decoding) + verified)
        seq_len = sum(r.num_computed_tokens for r in decoding) // len(decoding) if decoding else 0
        return PendingStep(plan, shadow, len(decoding), output.total_num_scheduled_tokens, seq_len,
                           decode_only and bool(decoding), time.perf_counter())

    def update_from_output(self, scheduler_output, model_runner_output):
        pending, self._pending = self._pending, None
        if pending is not None:
            if self.controller is not None:
                self._learn(pending, scheduler_output, model_runner_output)
            elif pending.batch:
                observed = time.perf_counter() - pending.started if pending.decode_only else None
                self.sink.record_plain_step(pending.batch, observed)
        return super().update_from_output(scheduler_output, model_runner_output)

    def _learn(self, pending: PendingStep, scheduler_output, model_runner_output) -> None:
        observed = time.perf_counter() - pending.started
        controller, acceptance = self.controller, self.controller.acceptance
        index, sampled = model_runner_output.req_id_to_index, model_runner_output.sampled_token_ids
        accepted_total = 0
        for request_id, drafts in scheduler_output.scheduled_spec_decode_tokens.items():
            row = index.get(request_id)
            generated = sampled[row] if sampled and row is not None else None
            if generated:
                accepted = len(generated) - 1
                acceptance.observe_verified(request_id, len(drafts), accepted)
                accepted_total += accepted
        for request_id, (position, token) in pending.shadow.items():
            row = index.get(request_id)
            generated = sampled[row] if sampled and row is not None else None
            # Shadow draft at `position` was tried only if every verified draft before it held.
            if generated and len(generated) - 1 == position:
                acceptance.observe_shadow(request_id, position, token == generated[-1])

        stats = StepStats(pending.plan.gamma, pending.batch, pending.plan.predicted_speedup,
                          pending.plan.decision_seconds, accepted_tokens=accepted_total)
        if pending.decode_only:
            raw, predicted = controller.predicted_step_seconds(pending.batch, pending.tokens, pending.seq_len)
            controller.observe_step(pending.batch, pending.tokens, raw, observed)
            stats.predicted_step_seconds, stats.observed_step_seconds = predicted, observed
            # speedup = E(γ) / [t(γ) / t(1)], so the batch emits B · speedup / t(1) tokens per second.
            plain_step = controller.costs.step_costs(pending.batch, pending.seq_len)[0]
            stats.predicted_goodput_tokens_per_second = pending.batch * pending.plan.predicted_speedup / plain_step
        self.sink.record_step(stats)
        steps = controller.status_steps
        if steps % ACCEPTANCE_METRICS_EVERY_STEPS == 0:
            self.sink.record_acceptance(acceptance.mean_acceptance(), acceptance.global_p)
        if steps % FORGET_EVERY_STEPS == 0:
            for request_id in [r for r in acceptance.by_request if r not in self.requests]:
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
