"""What `SpecgateScheduler` teaches the controller after a step: verified drafts and shadow drafts,
from vLLM's own step outputs (no engine: the outputs are built by hand)."""

from types import SimpleNamespace

from roofline import load_hardware, load_model
from server.controller.controller import ControllerConfig, GammaController, StepPlan
from server.controller.policy import GammaPolicy
from server.scheduler import PendingStep, SpecgateScheduler


def scheduler_learning_fully_from_each_outcome(request_ids) -> SpecgateScheduler:
    scheduler = object.__new__(SpecgateScheduler)  # only the learning half: no vLLM config needed
    scheduler.controller = GammaController(
        ControllerConfig(gamma_max=4, policy=GammaPolicy.parse("adaptive"), request_rate=1.0),
        load_model("smollm2-135m"), load_hardware("cpu-local"))
    scheduler.sink = SimpleNamespace(record_step=lambda stats: None, record_acceptance=lambda mean, by_position: None)
    scheduler.requests = dict.fromkeys(request_ids)
    return scheduler


def test_verified_and_shadow_drafts_are_learnt_up_to_the_first_rejection():
    ids = ["partly", "all-then-shadow-kept", "shadow-only-rejected", "shadow-not-reached"]
    scheduler = scheduler_learning_fully_from_each_outcome(ids)
    # drafts verified this step (vLLM's scheduled_spec_decode_tokens) and tokens sampled per row
    spec = {"partly": [11, 12, 13], "all-then-shadow-kept": [21, 22], "shadow-not-reached": [41]}
    sampled = {"partly": [11, 99], "all-then-shadow-kept": [21, 22, 23], "shadow-only-rejected": [31],
               "shadow-not-reached": [98]}
    # trimmed drafts: (position, token) of the first draft the plan did not verify; the last one would
    # match what was sampled, but its verified draft was rejected before it, so it was never tried
    shadow = {"all-then-shadow-kept": (2, 23), "shadow-only-rejected": (0, 30), "shadow-not-reached": (1, 98)}
    pending = PendingStep(StepPlan(ids, [0] * len(ids), 4, 3, 1.0), shadow, batch=4, tokens=10, verified=6,
                          seq_len=100, decode_only=True, entered=0.0)
    runner_output = SimpleNamespace(req_id_to_index={rid: i for i, rid in enumerate(ids)},
                                    sampled_token_ids=[sampled[rid] for rid in ids])
    scheduler._learn(pending, SimpleNamespace(scheduled_spec_decode_tokens=spec), runner_output)

    estimates = scheduler.controller.acceptance
    prior = 0.5
    assert estimates.of_request("partly") == [1.0, 0.0, prior, prior]
    assert estimates.of_request("all-then-shadow-kept") == [1.0, 1.0, 1.0, prior]  # the shadow was the third draft
    assert estimates.of_request("shadow-only-rejected") == [0.0, prior, prior, prior]
    assert estimates.of_request("shadow-not-reached") == [0.0, prior, prior, prior]  # its shadow never counted
    assert pending.accepted == 1 + 2  # verified drafts only
