from __future__ import annotations

import dataclasses

import pytest

from roofline import HardwareSpec, ModelSpec, load_hardware, load_model
from roofline.specs import hardware_presets, hardware_to_toml, model_presets

REQUIRED_HARDWARE = ["h100-sxm", "h200", "a100-80gb", "l40s", "b200", "mi300x", "cpu-local"]
REQUIRED_MODELS = [
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-65b",
    "opt-66b",
    "qwen2.5-7b",
    "mixtral-8x7b",
    "smollm2-135m",
]

# Published parameter counts (biases and position embeddings excluded, hence the tolerance).
PUBLISHED_PARAMS = {
    "llama-3.1-8b": 8.03e9,
    "llama-3.1-70b": 70.6e9,
    "llama-65b": 65.2e9,
    "opt-66b": 65.7e9,
    "qwen2.5-7b": 7.62e9,
    "mixtral-8x7b": 46.7e9,
    "smollm2-135m": 134.5e6,
}


def test_every_required_preset_exists_with_a_source():
    hardware, models = hardware_presets(), model_presets()
    assert set(REQUIRED_HARDWARE) <= set(hardware)
    assert set(REQUIRED_MODELS) <= set(models)
    for spec in [*hardware.values(), *models.values()]:
        assert spec.source.strip()


@pytest.mark.parametrize(("name", "params"), PUBLISHED_PARAMS.items())
def test_presets_match_published_parameter_counts(name, params):
    assert load_model(name).total_params == pytest.approx(params, rel=0.01)


def test_lookup_by_alias_and_hf_id():
    assert load_hardware("H100").name == "h100-sxm"
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    assert load_model("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2-135m"
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")
    with pytest.raises(ValueError, match="unknown hardware"):
        load_hardware("no-such-gpu")


def test_specs_check_themselves(h100):
    with pytest.raises(ValueError, match="positive"):
        dataclasses.replace(h100, memory_bandwidth_bytes_per_second=0)
    with pytest.raises(ValueError, match="source"):
        dataclasses.replace(h100, source="")
    llama = load_model("llama-3.1-8b")
    with pytest.raises(ValueError, match="multiple"):
        dataclasses.replace(llama, num_kv_heads=5)
    with pytest.raises(ValueError, match="experts_per_token"):
        dataclasses.replace(llama, num_experts=8, experts_per_token=0)
    with pytest.raises(ValueError, match="dtype"):
        dataclasses.replace(llama, weight_dtype="int3")


def test_dtype_aliases_and_overrides(llama8b):
    quantized = llama8b.with_dtypes("fp8", "fp8")
    assert (quantized.weight_dtype, quantized.kv_cache_dtype) == ("fp8", "fp8")
    assert llama8b.with_dtypes("bf16").weight_dtype == "bfloat16"
    assert quantized.kv_bytes_per_token == llama8b.kv_bytes_per_token / 2


def test_low_precision_peaks_fall_back_to_bf16():
    a100, h100 = load_hardware("a100-80gb"), load_hardware("h100-sxm")
    assert a100.peak_flops_for("fp8") == a100.peak_flops_bf16_per_second  # no FP8 tensor cores
    assert h100.peak_flops_for("fp8") == pytest.approx(2 * h100.peak_flops_bf16_per_second, rel=1e-3)
    assert h100.peak_flops_for("int4") == h100.peak_flops_bf16_per_second  # weight-only


def test_hardware_toml_round_trip(tmp_path, h100):
    path = tmp_path / "calibrated.toml"
    path.write_text(hardware_to_toml(h100))
    loaded = load_hardware(str(path))
    assert loaded == h100


def test_model_toml_file_with_table_selector(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(
        "[tiny]\nhidden_size = 64\nnum_layers = 2\nnum_attention_heads = 4\nnum_kv_heads = 2\n"
        'head_dim = 16\nintermediate_size = 128\nvocab_size = 1000\nsource = "test"\n'
    )
    assert load_model(f"{path}:tiny").hidden_size == 64
    assert load_model(str(path)).name == "tiny"


LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "hidden_act": "silu",
}


def test_local_folder_config_matches_preset(model_folder, smollm):
    local = load_model(model_folder(LLAMA_CONFIG, "SmolLM2-135M-Instruct"))
    assert local.name == "SmolLM2-135M-Instruct"
    identity = ("name", "source", "hf_id", "aliases")

    def shape(spec):
        return {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec) if f.name not in identity}

    assert shape(local) == shape(smollm)


def test_local_config_json_path_and_new_dtype_key(model_folder):
    config = {**LLAMA_CONFIG, "dtype": "float16"}
    del config["torch_dtype"]
    folder = model_folder(config)
    spec = load_model(folder / "config.json")
    assert spec.weight_dtype == spec.kv_cache_dtype == "float16"


def test_reads_mixtral_opt_qwen_and_quantized_configs(model_folder):
    mixtral = load_model(
        model_folder(
            {
                "model_type": "mixtral",
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "num_hidden_layers": 32,
                "vocab_size": 32000,
                "num_local_experts": 8,
                "num_experts_per_tok": 2,
                "sliding_window": None,
                "torch_dtype": "bfloat16",
            },
            "mixtral",
        )
    )
    assert (mixtral.num_experts, mixtral.experts_per_token, mixtral.sliding_window) == (8, 2, 0)
    assert mixtral.total_params == load_model("mixtral-8x7b").total_params

    opt = load_model(
        model_folder(
            {
                "model_type": "opt",
                "hidden_size": 9216,
                "ffn_dim": 36864,
                "num_attention_heads": 72,
                "num_hidden_layers": 64,
                "vocab_size": 50272,
                "activation_function": "relu",
                "torch_dtype": "float16",
            },
            "opt",
        )
    )
    assert not opt.gated_mlp and opt.tie_word_embeddings
    assert opt.total_params == load_model("opt-66b").total_params

    qwen = load_model(
        model_folder(
            {
                "model_type": "qwen2",
                "hidden_size": 3584,
                "intermediate_size": 18944,
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "num_hidden_layers": 28,
                "vocab_size": 152064,
                "sliding_window": 131072,
                "use_sliding_window": False,
                "tie_word_embeddings": False,
                "torch_dtype": "bfloat16",
                "quantization_config": {"quant_method": "awq", "bits": 4},
            },
            "qwen-awq",
        )
    )
    assert qwen.sliding_window == 0
    assert qwen.weight_dtype == "int4" and qwen.kv_cache_dtype == "bfloat16"

    fp8 = load_model(model_folder({**LLAMA_CONFIG, "quantization_config": {"quant_method": "fp8"}}, "fp8"))
    assert fp8.weight_dtype == "fp8"


def test_hardware_spec_is_frozen(h100):
    with pytest.raises(dataclasses.FrozenInstanceError):
        h100.memory_bandwidth_bytes_per_second = 1.0
    assert isinstance(h100, HardwareSpec)
