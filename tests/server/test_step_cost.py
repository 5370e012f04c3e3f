"""The controller's step-cost model: global calibration plus per-batch-bucket corrections."""

import pytest

from roofline import load_hardware, load_model
from roofline.planner import GammaPlanner
from server.controller.step_cost import StepCostModel, batch_bucket, ridge_line


def make_model(**options) -> StepCostModel:
    planner = GammaPlanner(load_model("smollm2-135m"), load_hardware("cpu-local"), gamma_max=4)
    return StepCostModel(planner, **options)


def feed(model: StepCostModel, sizes, step_seconds, seq_len=512, qs=(1, 2, 3, 5)):
    for size in sizes:
        for q in qs:
            tokens = size * q
            raw, _ = model.step_seconds(size, tokens, seq_len)
            model.observe(size, tokens, raw, step_seconds(size, tokens))


def test_ridge_line_is_least_squares_shrunk_toward_zero():
    points = [(x, 2.0 + 3.0 * x) for x in (0.5, 1.0, 1.5, 2.0)]
    assert ridge_line(points, ridge=0.0) == pytest.approx((2.0, 3.0))
    a, c = ridge_line(points, ridge=100.0)
    assert 0 < a < 2.0 and 0 < c < 3.0
    assert ridge_line([], ridge=16.0) == (0.0, 0.0)


def test_batch_buckets_are_powers_of_two():
    assert [batch_bucket(b) for b in (1, 2, 3, 4, 7, 8, 64, 127, 128)] == [1, 2, 2, 3, 3, 4, 7, 7, 8]


def test_without_samples_the_roofline_prices_steps():
    model = make_model()
    model.refit()  # too few samples: nothing changes
    assert model.step_costs(8, 512) == list(model.planner.step_costs(8, 512))


def test_a_batch_size_the_global_fit_misprices_is_corrected():
    # 20 ms + 0.5 ms per token, except at batch 32-63, where verification costs 0.1 ms per token
    def machine(size, tokens):
        return 0.020 + (0.0001 if 32 <= size < 64 else 0.0005) * tokens

    model = make_model(ridge_samples=4.0)
    feed(model, (1, 2, 4, 8, 16), machine)
    for _ in range(8):
        feed(model, (40,), machine)
    model.refit()
    _, small = model.step_seconds(8, 16, 512)
    _, large = model.step_seconds(40, 80, 512)
    assert small == pytest.approx(machine(8, 16), rel=0.1)
    assert large == pytest.approx(machine(40, 80), rel=0.1)
    ratios = model.cost_ratios(40, 512)
    # one draft per request at batch 40 costs 40 × 0.1 ms on a 24 ms step
    assert ratios[1] == pytest.approx(machine(40, 80) / machine(40, 40), rel=0.05)
    assert "32-63" in model.status()["by_batch_bucket"]


def test_corrections_never_price_a_step_below_a_tenth_of_the_roofline():
    model = make_model(ridge_samples=0.0)
    feed(model, (4,), lambda size, tokens: 0.0)
    model.refit()
    calibrated = model.calibrated.step_costs(4, 512)
    assert all(c >= 0.1 * base - 1e-15 for c, base in zip(model.step_costs(4, 512), calibrated))


def test_the_decode_step_is_the_first_of_the_step_costs():
    model = make_model()
    feed(model, (8, 8, 8, 8, 16, 16, 16, 16), lambda b, t: 0.03 + 0.001 * t + (0.01 if b < 16 else 0.0))
    model.refit()
    for batch in (1, 8, 16):
        assert model.decode_step_seconds(batch, 512) == model.step_costs(batch, 512)[0]
