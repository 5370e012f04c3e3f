"""The γ controller's decision logic on synthetic inputs (no engine)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofline import load_hardware, load_model
from server.controller.acceptance import GLOBAL_ROW, AcceptanceEstimates
from server.controller.controller import ControllerConfig, GammaController
from server.controller.policy import GammaPolicy


def make_controller(policy="adaptive", gamma_max=4, **config):
    config.setdefault("explore_probability", 0.0)
    return GammaController(ControllerConfig(gamma_max=gamma_max, policy=GammaPolicy.parse(policy), **config),
                           load_model("smollm2-135m"), load_hardware("cpu-local"))


CONTEXT = 512


def batch(n, prefix="r"):
    return [f"{prefix}{i}" for i in range(n)]


def set_global_acceptance(controller, p):
    controller.acceptance.set_global([p] * controller.config.gamma_max)


# ---- policies ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["adaptive", "off", "fixed:3", "table:[[1,4,4],[5,16,2],[17,64,0]]"])
def test_policy_round_trips(text):
    assert str(GammaPolicy.parse(text)) == text


@pytest.mark.parametrize("text", ["", "fixed", "fixed:x", "fixed:-1", "table:[[0,4,1]]", "table:nope", "greedy"])
def test_bad_policies_are_rejected(text):
    with pytest.raises(ValueError):
        GammaPolicy.parse(text)


def test_table_follows_vllm_rule_gaps_carry_forward():
    policy = GammaPolicy.parse("table:[[1,4,4],[8,16,2]]")
    assert [policy.table_gamma(b) for b in (1, 4, 5, 7, 8, 16, 100)] == [4, 4, 4, 4, 2, 2, 2]


def test_fixed_table_and_off_policies_apply_to_every_request():
    assert set(make_controller("fixed:3").plan(batch(5), CONTEXT).gamma_by_request.values()) == {3}
    assert set(make_controller("fixed:9").plan(batch(5), CONTEXT).gamma_by_request.values()) == {4}  # capped at γ_max
    table = make_controller("table:[[1,4,4],[5,64,1]]")
    assert set(table.plan(batch(2), CONTEXT).gamma_by_request.values()) == {4}
    assert set(table.plan(batch(8), CONTEXT).gamma_by_request.values()) == {1}
    off = make_controller("off").plan(batch(3), CONTEXT)
    assert set(off.gamma_by_request.values()) == {0} and off.proposals_next_step == 0


# ---- adaptive decisions ------------------------------------------------------------------
def test_high_acceptance_small_batch_speculates_fully():
    controller = make_controller()
    set_global_acceptance(controller, 0.9)
    plan = controller.plan(batch(1), CONTEXT)
    assert plan.gamma == 4 and plan.gamma_by_request == {"r0": 4} and plan.predicted_speedup > 1.5


def test_zero_acceptance_turns_speculation_off():
    controller = make_controller(hysteresis=0.0)
    set_global_acceptance(controller, 0.0)
    plan = controller.plan(batch(8), CONTEXT)
    assert plan.gamma == 0 and set(plan.gamma_by_request.values()) == {0}
    assert plan.predicted_speedup == pytest.approx(1.0)


def test_gamma_never_rises_with_batch_in_compute_bound_regime():
    controller = make_controller(hysteresis=0.0)
    set_global_acceptance(controller, 0.6)
    gammas = []
    for size in (1, 64, 256, 1024, 4096):
        controller._held_gamma = 4
        gammas.append(controller.plan(batch(size), 64).gamma)
    assert gammas == sorted(gammas, reverse=True)
    assert gammas[-1] < gammas[0]


def test_a_copying_request_gets_more_drafts_than_a_wandering_one():
    controller = make_controller(hysteresis=0.0)
    set_global_acceptance(controller, 0.5)
    for _ in range(20):
        controller.acceptance.observe(["copier", "wanderer"], drafted=[4, 4], accepted=[4, 0])
    plan = controller.plan(["copier", "wanderer"] + batch(30), CONTEXT)
    assert plan.gamma_by_request["copier"] > plan.gamma_by_request["wanderer"]
    assert plan.gamma_by_request["wanderer"] == 0


def test_hysteresis_holds_gamma_against_small_gains():
    controller = make_controller(hysteresis=0.5)
    set_global_acceptance(controller, 0.55)
    first = controller.plan(batch(4), CONTEXT).gamma
    set_global_acceptance(controller, 0.6)
    assert controller.plan(batch(4), CONTEXT).gamma == first


def test_shadow_proposals_keep_estimates_fresh_when_nobody_drafts():
    controller = make_controller(hysteresis=0.0, shadow_every_steps=4)
    set_global_acceptance(controller, 0.0)
    proposals = [controller.plan(batch(4), CONTEXT).proposals_next_step for _ in range(8)]
    assert proposals.count(0) == 6 and proposals.count(4) == 2


def test_calibration_fits_measured_step_times():
    controller = make_controller()
    # a machine whose steps cost 20 ms fixed + 2 ms per token: the raw roofline knows neither
    for size in (1, 2, 4, 8, 16, 32):
        for q in (1, 2, 3, 5):
            tokens = size * q
            raw, _ = controller.predicted_step_seconds(size, tokens, 512)
            controller.observe_step(size, tokens, raw, 0.020 + 0.002 * tokens)
    controller.recalibrate()
    _, predicted = controller.predicted_step_seconds(8, 16, 512)
    assert predicted == pytest.approx(0.020 + 0.002 * 16, rel=0.05)
    assert controller.status()["calibration"]["samples"] == 24


def test_calibrated_costly_verification_lowers_gamma_at_large_batch():
    controller = make_controller(hysteresis=0.0)
    set_global_acceptance(controller, 0.5)
    for size in (1, 4, 16, 64):
        for q in (1, 2, 5):
            raw, _ = controller.predicted_step_seconds(size, size * q, 512)
            controller.observe_step(size, size * q, raw, 0.020 + 0.002 * size * q)
    controller.recalibrate()
    controller._held_gamma = 4
    small = controller.plan(batch(1), CONTEXT).gamma
    controller._held_gamma = 4
    large = controller.plan(batch(64), CONTEXT).gamma
    assert small > large


# ---- acceptance estimates -----------------------------------------------------------------
def test_verified_drafts_update_positions_up_to_the_first_rejection():
    estimates = AcceptanceEstimates(gamma_max=4, prior=0.5, request_rate=0.5, global_rate=0.5)
    estimates.observe(["r"], drafted=[4], accepted=[2])
    assert estimates.of_request("r") == [0.75, 0.75, 0.25, 0.5]  # position 4 untried
    assert estimates.survival("r") == pytest.approx([0.75, 0.5625, 0.140625, 0.0703125])
    assert estimates.global_p.tolist() == [0.75, 0.75, 0.25, 0.5]


def test_a_step_moves_the_global_estimate_by_its_mean_with_the_weight_of_its_observations():
    estimates = AcceptanceEstimates(gamma_max=2, prior=0.5, global_rate=0.5)
    estimates.observe(["a", "b", "c"], drafted=[2, 2, 1], accepted=[2, 0, 1])
    # position 1: three observations (1, 0, 1), weight 1 − 0.5³; position 2: one (1), weight 0.5
    assert estimates.global_p.tolist() == pytest.approx([0.5 + 0.875 * (2 / 3 - 0.5), 0.75])
    assert estimates.of_request("b") == [0.375, 0.5]  # each request's own row moves by its own outcome


def test_requests_past_the_first_rows_grow_the_tables_and_forgotten_rows_are_reused():
    estimates = AcceptanceEstimates(gamma_max=2, capacity=2)
    ids = [f"r{i}" for i in range(5)]
    estimates.observe(ids, drafted=[2] * 5, accepted=[0, 1, 2, 0, 2])
    assert [estimates.survival(r)[0] < 0.5 for r in ids] == [True, False, False, True, False]
    estimates.forget("r0")
    estimates.observe(["new"], drafted=[1], accepted=[1])
    assert estimates.of_request("r0") is None and estimates.survival("new")[0] > estimates.global_p[0]
    assert set(estimates.tracked_request_ids()) == set(ids[1:]) | {"new"}


def test_rows_of_a_repeated_batch_follow_requests_seen_and_forgotten_in_between():
    estimates = AcceptanceEstimates(gamma_max=2)
    step = ["a", "b"]
    assert estimates.rows_of(list(step)).tolist() == [GLOBAL_ROW, GLOBAL_ROW]  # unseen
    estimates.observe(["a"], drafted=[1], accepted=[1])
    a_row = estimates.rows_of(list(step))[0]
    assert a_row != GLOBAL_ROW and estimates.rows_of(list(step)).tolist() == [a_row, GLOBAL_ROW]
    estimates.forget("a")
    assert estimates.rows_of(list(step)).tolist() == [GLOBAL_ROW, GLOBAL_ROW]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=8), st.floats(0.0, 1.0))
def test_each_request_gets_the_leading_drafts_whose_survival_beats_the_threshold(outcomes, acceptance):
    controller = make_controller(gamma_max=6, hysteresis=0.0)
    set_global_acceptance(controller, acceptance)
    ids = [f"r{i}" for i in range(len(outcomes))]
    controller.acceptance.observe(ids, [d for d, _ in outcomes], [min(a, d) for d, a in outcomes])
    plan = controller.plan([*ids, "unseen"], CONTEXT)
    threshold = plan.draft_threshold
    estimates = controller.acceptance
    for rid in ids + ["unseen"]:
        survival = estimates.survival(rid) or estimates.survival_by_row[GLOBAL_ROW].tolist()  # unseen: the global row
        assert plan.gamma_by_request[rid] == next((k for k, s in enumerate(survival) if s <= threshold), 6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6)), min_size=1, max_size=50))
def test_estimates_stay_probabilities(observations):
    estimates = AcceptanceEstimates(gamma_max=6)
    for drafted, accepted in observations:
        estimates.observe(["r"], [drafted], [min(accepted, drafted)])
    assert all(0.0 <= p <= 1.0 for p in estimates.global_p.tolist() + estimates.of_request("r"))
    survival = estimates.survival("r")
    assert survival == sorted(survival, reverse=True)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 128), st.floats(0.0, 1.0), st.sampled_from(["adaptive", "fixed:2", "off"]))
def test_plan_gammas_are_within_bounds(size, acceptance, policy):
    controller = make_controller(policy, hysteresis=0.0)
    set_global_acceptance(controller, acceptance)
    plan = controller.plan(batch(size), CONTEXT)
    assert set(plan.gamma_by_request) == {f"r{i}" for i in range(size)}
    assert all(0 <= g <= 4 for g in plan.gamma_by_request.values())
    assert 0 <= plan.proposals_next_step <= 4
    assert plan.predicted_speedup >= 1.0 or policy != "adaptive"


# ---- exploration and the draft-model pause -------------------------------------------------
def test_exploration_verifies_about_one_extra_step_of_tokens():
    controller = make_controller(gamma_max=8, explore_probability=0.99)
    set_global_acceptance(controller, 0.0)
    explored = set()
    for _ in range(50):
        plan = controller.plan(batch(64), CONTEXT)
        if plan.explored:
            assert sum(plan.gamma_by_request.values()) <= 64 + 8
            if plan.gamma >= 2:  # (γ = 1 explores everyone)
                explored.update(request_id for request_id, gamma in plan.gamma_by_request.items() if gamma)
    assert explored == set(batch(64))  # nobody is left out of exploration for good


def draft_model_controller(**config):
    config.setdefault("pause_drafter_after_steps", 4)
    config.setdefault("draft_probe_every_steps", 16)
    config.setdefault("draft_probe_steps", 3)
    config.setdefault("draft_cost_ratio", 0.2)  # a draft model: 20 % of a target step per draft
    return make_controller(drafter_is_cheap=False, hysteresis=0.0, **config)


def test_an_idle_draft_model_is_paused_and_probed_now_and_then():
    controller = draft_model_controller()
    set_global_acceptance(controller, 0.0)
    plans = [controller.plan(batch(4), CONTEXT) for _ in range(4 + 32)]
    assert all(p.run_drafter for p in plans[:3])
    paused = [p for p in plans[4:] if not p.run_drafter]
    assert len(paused) == 2 * (16 - 3) and all(p.proposals_next_step == 0 and p.gamma == 0 for p in paused)
    probes = [p for p in plans[4:] if p.run_drafter]
    assert len(probes) == 2 * 3
    # a probe drafts first, then verifies every draft
    assert probes[0].gamma == 0 and probes[0].proposals_next_step == 4
    assert all(p.gamma == 4 and p.explored for p in probes[1:3])
    assert controller.status()["drafter_paused"] is True


def test_the_drafter_resumes_when_drafting_pays_again():
    controller = draft_model_controller()
    set_global_acceptance(controller, 0.0)
    for _ in range(8):
        controller.plan(batch(4), CONTEXT)
    assert not controller.plan(batch(4), CONTEXT).run_drafter
    set_global_acceptance(controller, 0.95)
    plan = controller.plan(batch(1), CONTEXT)
    assert plan.run_drafter and plan.gamma > 0 and controller.status()["drafter_paused"] is False


def test_a_paused_drafter_skips_prefill_only_steps_too():
    controller = draft_model_controller()
    set_global_acceptance(controller, 0.0)
    assert controller.plan([], 0).run_drafter  # running: drafts for the new request are prepared
    for _ in range(8):
        controller.plan(batch(1), CONTEXT)
    prefill = controller.plan([], 0)
    assert not prefill.run_drafter and prefill.proposals_next_step == 0
    fixed = draft_model_controller(policy="fixed:2")
    assert fixed.plan([], 0).run_drafter and fixed.plan([], 0).proposals_next_step == 4


def test_one_lucky_request_does_not_restart_a_paused_drafter():
    controller = draft_model_controller()
    set_global_acceptance(controller, 0.0)
    for _ in range(8):
        controller.plan(batch(4), CONTEXT)
    for _ in range(3):  # a probe's few accepted tokens lift one request's own estimate
        controller.acceptance.observe(["r0"], [4], [4])
    assert controller.acceptance.survival("r0")[0] > 0.5
    plans = [controller.plan(batch(4), CONTEXT) for _ in range(4)]
    assert not any(p.run_drafter or p.gamma for p in plans)
    assert controller.status()["drafter_paused"] is True


def test_a_running_drafter_still_drafts_for_the_requests_worth_it():
    controller = draft_model_controller()
    set_global_acceptance(controller, 0.0)
    controller.acceptance.observe(["r0"], [4], [4])
    controller.acceptance.observe(["r0"], [4], [4])
    plan = controller.plan(batch(4), CONTEXT)
    assert plan.run_drafter and plan.gamma_by_request["r0"] > 0 and plan.gamma_by_request["r1"] == 0


def test_cheap_drafters_are_never_paused():
    controller = make_controller(hysteresis=0.0, pause_drafter_after_steps=2)
    set_global_acceptance(controller, 0.0)
    assert all(controller.plan(batch(4), CONTEXT).run_drafter for _ in range(64))
