from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofline import load_hardware, load_model
from roofline.cost import fits_in_memory, step_cost, step_time_seconds
from roofline.specs import hardware_presets, model_presets

MODELS = sorted(model_presets())
HARDWARE = sorted(hardware_presets())


def test_smollm2_flops_and_bytes_by_hand(smollm, h100):
    """SmolLM2-135M, B = 1, q = 1, S = 1024, bf16 (2 bytes) everywhere.

    d = 576, 30 layers, h = 9, h_kv = 3, d_h = 64, f = 1536 (gated), V = 49152 (tied).
    QKV width (9 + 2·3)·64 = 960.
    Per layer FLOPs: qkv 2·576·960 = 1,105,920; attention 4·9·64·1024 = 2,359,296;
    o 2·576·576 = 663,552; mlp 2·3·576·1536 = 5,308,416 → 9,437,184; × 30 = 283,115,520.
    LM head 2·576·49152 = 56,623,104. Total 339,738,624.
    Per layer bytes: qkv weights 576·960·2 = 1,105,920 + activations (576 + 960)·2 = 3,072;
    attention KV read 2·1024·3·64·2 = 786,432 + Q in/out 2·576·2 = 2,304; KV write 2·192·2 = 768;
    o 663,552 + 2,304; mlp 5,308,416 + (2·576 + 6·1536)·2 = 20,736; norms/residuals 10·576·2 =
    11,520 → 7,905,024; × 30 = 237,150,720. Embedding 2·576·2 = 2,304, final norm 2,304,
    LM head 49152·576·2 = 56,623,104 + (576 + 49152)·2 = 99,456. Total 293,877,888.
    """
    cost = step_cost(smollm, h100, batch=1, query_len=1, seq_len=1024)
    assert cost.operation("qkv_proj").flops == 30 * 1_105_920
    assert cost.operation("attention").flops == 30 * 2_359_296
    assert cost.operation("attention").bytes == 30 * (786_432 + 2_304)
    assert cost.operation("kv_cache_write").bytes == 30 * 768
    assert cost.operation("mlp").bytes == 30 * (5_308_416 + 20_736)
    assert cost.operation("lm_head").flops == 56_623_104
    assert cost.flops == 339_738_624
    assert cost.bytes == 293_877_888
    # At B = 1 every operation is bandwidth-bound, so the step is bytes / bandwidth.
    assert cost.bound == "memory"
    assert cost.seconds == pytest.approx(293_877_888 / 3.35e12, rel=1e-12)
    assert step_time_seconds(smollm, h100, 1, 1, 1024, overhead_seconds=1e-3) == pytest.approx(1e-3 + cost.seconds)


def test_weights_are_read_once_per_step_and_flops_scale_with_tokens(llama8b, h100):
    one = step_cost(llama8b, h100, 1, 1, 0)
    many = step_cost(llama8b, h100, 8, 4, 0)
    for name in ("qkv_proj", "o_proj", "mlp", "lm_head"):
        assert many.operation(name).flops == 32 * one.operation(name).flops
        assert many.operation(name).bytes - one.operation(name).bytes < 0.05 * one.operation(name).bytes


def test_gqa_reads_kv_heads_only(llama8b, h100):
    mha = dataclasses.replace(llama8b, num_kv_heads=32)
    kv = lambda spec: step_cost(spec, h100, 4, 1, 4096).operation("attention").bytes  # noqa: E731
    attention_flops = lambda spec: step_cost(spec, h100, 4, 1, 4096).operation("attention").flops  # noqa: E731
    assert kv(mha) == pytest.approx(4 * kv(llama8b), rel=1e-3)
    assert attention_flops(mha) == attention_flops(llama8b)  # FLOPs run over all query heads


def test_kv_read_does_not_depend_on_query_length(llama8b, h100):
    read = lambda q: step_cost(llama8b, h100, 2, q, 2048).operation("attention").bytes  # noqa: E731
    per_token = 2 * 4096 * 2 * 32  # Q in + out per token, 32 layers
    assert read(5) - read(1) == 2 * 4 * per_token


def test_dtypes_change_the_bytes(llama8b, h100):
    bf16 = step_cost(llama8b, h100, 1, 1, 4096)
    fp8 = step_cost(llama8b.with_dtypes("fp8", "fp8"), h100, 1, 1, 4096)
    int4 = step_cost(llama8b.with_dtypes("int4"), h100, 1, 1, 4096)
    assert fp8.operation("mlp").bytes < 0.51 * bf16.operation("mlp").bytes
    assert int4.operation("mlp").bytes < 0.26 * bf16.operation("mlp").bytes
    assert fp8.operation("attention").bytes < 0.51 * bf16.operation("attention").bytes
    assert fp8.operation("lm_head").bytes == bf16.operation("lm_head").bytes  # LM head stays bf16


def test_moe_reads_only_touched_experts(h100):
    mixtral = load_model("mixtral-8x7b")
    expert_bytes = 3 * 4096 * 14336 * 2 * 32
    one = step_cost(mixtral, h100, 1, 1, 1024).operation("experts")
    assert one.bytes == pytest.approx(2 * expert_bytes, rel=1e-3)  # top-2 of 8 for one token
    assert one.flops == 2 * 2 * 3 * 4096 * 14336 * 32
    many = step_cost(mixtral, h100, 256, 1, 1024).operation("experts")
    activations = 256 * 2 * (2 * 4096 + 6 * 14336) * 2 * 32
    touched = 8 * (1 - 0.75**256)  # every expert, to 32 digits
    assert many.bytes - activations == pytest.approx(touched * expert_bytes, rel=1e-12)


def test_sliding_window_caps_attention(llama8b, h100):
    windowed = dataclasses.replace(llama8b, sliding_window=1024)
    capped = step_cost(windowed, h100, 4, 1, 8192).operation("attention")
    assert capped == step_cost(llama8b, h100, 4, 1, 1024).operation("attention")


def test_compute_bound_step_cost_grows_like_tokens(llama8b, h100):
    ratio = step_time_seconds(llama8b, h100, 2048, 8, 1) / step_time_seconds(llama8b, h100, 2048, 1, 1)
    assert step_cost(llama8b, h100, 2048, 1, 1).bound == "compute"
    assert 7.5 < ratio <= 8.0
    # A long KV cache is read once whatever q is: it keeps verification cheaper than γ + 1.
    long_context = step_time_seconds(llama8b, h100, 2048, 8, 4096) / step_time_seconds(llama8b, h100, 2048, 1, 4096)
    assert long_context < 0.5 * ratio


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(MODELS), st.sampled_from(HARDWARE), st.integers(1, 64), st.integers(2, 17), st.integers(0, 32768)
)
def test_memory_bound_decode_is_flat_in_query_length(model_name, hardware_name, batch, query_len, seq_len):
    """While every operation stays bandwidth-bound, adding query tokens adds only their
    activation and KV-write bytes: weights and the KV cache are read once either way."""
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    longer = step_cost(model, hardware, batch, query_len, seq_len)
    if model.is_moe or any(op.compute_bound for op in longer.operations):
        return
    decode = step_cost(model, hardware, batch, 1, seq_len)
    extra_bytes = longer.bytes - decode.bytes
    assert longer.seconds - decode.seconds == pytest.approx(
        extra_bytes / hardware.memory_bandwidth_bytes_per_second, rel=1e-6
    )
    per_token_bytes = step_cost(model, hardware, 1, 2, 0).bytes - step_cost(model, hardware, 1, 1, 0).bytes
    assert extra_bytes == pytest.approx(batch * (query_len - 1) * per_token_bytes, rel=1e-9)


def test_memory_bound_decode_is_flat_for_llama_8b(llama8b, h100):
    decode = step_time_seconds(llama8b, h100, 1, 1, 4096)
    for query_len in range(2, 9):
        assert 1.0 < step_time_seconds(llama8b, h100, 1, query_len, 4096) / decode < 1.005


@given(st.sampled_from(MODELS), st.integers(1, 512), st.integers(1, 16), st.integers(0, 16384))
def test_step_time_never_falls_with_more_work(model_name, batch, query_len, seq_len):
    model, hardware = load_model(model_name), load_hardware("h100-sxm")
    base = step_time_seconds(model, hardware, batch, query_len, seq_len)
    assert step_time_seconds(model, hardware, batch + 1, query_len, seq_len) >= base
    assert step_time_seconds(model, hardware, batch, query_len + 1, seq_len) >= base
    assert step_time_seconds(model, hardware, batch, query_len, seq_len + 1) >= base


def test_fits_in_memory(llama8b, h100):
    assert fits_in_memory(llama8b, h100, 8, 4096)
    assert not fits_in_memory(llama8b, h100, 1024, 8192)
    assert not fits_in_memory(load_model("llama-3.1-70b"), h100, 1, 1)


def test_rejects_empty_steps(llama8b, h100):
    with pytest.raises(ValueError):
        step_cost(llama8b, h100, 0, 1, 10)
    with pytest.raises(ValueError):
        step_cost(llama8b, h100, 1, 0, 10)
