"""Hardware and model specifications: typed, self-checking records loaded from data.

The numbers live in TOML presets (``roofline/presets/*.toml``, one table per entry, units in
the key names, a ``source`` per entry) or in a local Hugging Face model folder's
``config.json``; this module only turns them into frozen dataclasses and validates them.
"""

from __future__ import annotations

import functools
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

BYTES_PER_ELEMENT: dict[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}

_DTYPE_ALIASES: dict[str, str] = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "float8_e4m3fn": "fp8",
    "e4m3": "fp8",
    "w8a8": "int8",
    "w4a16": "int4",
}

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
HARDWARE_PRESETS_FILE = "hardware.toml"
MODEL_PRESETS_FILE = "models.toml"


def normalize_dtype(name: str) -> str:
    """Canonical dtype name (``bf16`` → ``bfloat16``, ``torch.float16`` → ``float16``)."""
    key = str(name).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in BYTES_PER_ELEMENT:
        known = ", ".join(sorted(BYTES_PER_ELEMENT))
        raise ValueError(f"unknown dtype {name!r}; known: {known}")
    return key


def dtype_bytes(name: str) -> float:
    return BYTES_PER_ELEMENT[normalize_dtype(name)]


def _require_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One accelerator (or CPU socket) as the roofline sees it: peak rates and capacity.

    Peaks are dense (no 2:4 sparsity) datasheet numbers unless ``source`` says measured.
    A missing low-precision peak means the unit has no such tensor cores: those GEMMs run at
    the bf16 peak.
    """

    name: str
    memory_bandwidth_bytes_per_second: float
    peak_flops_bf16_per_second: float
    memory_capacity_bytes: float
    source: str
    display_name: str = ""
    peak_flops_fp8_per_second: float | None = None
    peak_flops_int8_per_second: float | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("hardware spec needs a name")
        if not self.source:
            raise ValueError(f"hardware {self.name!r}: every spec needs a source")
        for name in (
            "memory_bandwidth_bytes_per_second",
            "peak_flops_bf16_per_second",
            "memory_capacity_bytes",
            "peak_flops_fp8_per_second",
            "peak_flops_int8_per_second",
        ):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        _require_positive(
            f"hardware {self.name!r}",
            memory_bandwidth_bytes_per_second=self.memory_bandwidth_bytes_per_second,
            peak_flops_bf16_per_second=self.peak_flops_bf16_per_second,
            memory_capacity_bytes=self.memory_capacity_bytes,
        )
        for name in ("peak_flops_fp8_per_second", "peak_flops_int8_per_second"):
            value = getattr(self, name)
            if value is not None:
                _require_positive(f"hardware {self.name!r}", **{name: value})
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity at which bf16 GEMMs turn compute-bound (peak / bandwidth)."""
        return self.peak_flops_bf16_per_second / self.memory_bandwidth_bytes_per_second

    def peak_flops_for(self, weight_dtype: str) -> float:
        """Peak for GEMMs whose weights are ``weight_dtype``.

        fp8 and int8 weights are taken as W8A8 (low-precision tensor cores where the unit has
        them); int4 is weight-only quantisation (dequantised, bf16 math).
        """
        dtype = normalize_dtype(weight_dtype)
        if dtype == "fp8" and self.peak_flops_fp8_per_second:
            return self.peak_flops_fp8_per_second
        if dtype == "int8" and self.peak_flops_int8_per_second:
            return self.peak_flops_int8_per_second
        return self.peak_flops_bf16_per_second


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer's shape, as far as step cost depends on it.

    ``num_experts == 0`` is a dense model; otherwise every layer's FFN is a mixture of
    ``num_experts`` experts of width ``intermediate_size`` with ``experts_per_token`` routed
    per token (plus an optional always-on shared expert). ``sliding_window == 0`` means full
    attention. Biases, rotary tables and learned position embeddings are left out (< 0.1 % of
    bytes for the presets).
    """

    name: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    source: str
    tie_word_embeddings: bool = False
    gated_mlp: bool = True
    num_experts: int = 0
    experts_per_token: int = 0
    shared_expert_intermediate_size: int = 0
    sliding_window: int = 0
    weight_dtype: str = "bfloat16"
    kv_cache_dtype: str = "bfloat16"
    activation_dtype: str = "bfloat16"
    hf_id: str = ""
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model spec needs a name")
        if not self.source:
            raise ValueError(f"model {self.name!r}: every spec needs a source")
        owner = f"model {self.name!r}"
        for name in (
            "hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"{owner}: num_attention_heads ({self.num_attention_heads}) must be a multiple "
                f"of num_kv_heads ({self.num_kv_heads})"
            )
        for name in ("num_experts", "experts_per_token", "shared_expert_intermediate_size", "sliding_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{owner}: {name} must be a non-negative integer, got {value!r}")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ValueError(
                f"{owner}: experts_per_token must be in 1..num_experts ({self.num_experts}), "
                f"got {self.experts_per_token}"
            )
        for name in ("weight_dtype", "kv_cache_dtype", "activation_dtype"):
            object.__setattr__(self, name, normalize_dtype(getattr(self, name)))
        if self.activation_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"{owner}: activation_dtype must be a float type, got {self.activation_dtype!r}")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attention_width(self) -> int:
        """h · d_h: the query/output projection width (equals hidden_size for most models)."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """h_kv · d_h: width of one of K or V per token per layer."""
        return self.num_kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.gated_mlp else 2

    @property
    def attention_params_per_layer(self) -> int:
        """Q, K, V and O projections: d·(h + 2·h_kv)·d_h + h·d_h·d."""
        d = self.hidden_size
        return d * (self.attention_width + 2 * self.kv_width) + self.attention_width * d

    @property
    def expert_params(self) -> int:
        """One FFN (dense model) or one routed expert (MoE)."""
        return self.mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def ffn_params_per_layer(self) -> int:
        """All FFN weights of one layer, every expert included (what must sit in memory)."""
        shared = self.mlp_matrices * self.hidden_size * self.shared_expert_intermediate_size
        if not self.is_moe:
            return self.expert_params + shared
        router = self.hidden_size * self.num_experts
        return self.num_experts * self.expert_params + shared + router

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        layers = self.num_layers * (self.attention_params_per_layer + self.ffn_params_per_layer)
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return layers + self.embedding_params + lm_head

    @property
    def weight_bytes(self) -> float:
        """Resident weight bytes: decoder layers in ``weight_dtype``; embeddings and LM head
        stay in ``activation_dtype`` (quantisation recipes leave them unquantised)."""
        layers = self.num_layers * (self.attention_params_per_layer + self.ffn_params_per_layer)
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return layers * dtype_bytes(self.weight_dtype) + (self.embedding_params + lm_head) * dtype_bytes(
            self.activation_dtype
        )

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of one token over all layers: 2 · layers · h_kv · d_h · b_kv."""
        return 2 * self.num_layers * self.kv_width * dtype_bytes(self.kv_cache_dtype)

    def attention_context(self, seq_len: int) -> int:
        """KV positions one query attends to: the sequence, capped by the sliding window."""
        return min(seq_len, self.sliding_window) if self.sliding_window else seq_len

    def with_dtypes(self, weight_dtype: str | None = None, kv_cache_dtype: str | None = None) -> ModelSpec:
        changes: dict[str, Any] = {}
        if weight_dtype:
            changes["weight_dtype"] = weight_dtype
        if kv_cache_dtype:
            changes["kv_cache_dtype"] = kv_cache_dtype
        return _replace(self, **changes) if changes else self


def _replace(spec: Any, **changes: Any) -> Any:
    values = {f.name: getattr(spec, f.name) for f in fields(spec)}
    values.update(changes)
    return type(spec)(**values)


# --------------------------------------------------------------------------------------------
# Loading presets and files
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _read_preset_tables(filename: str) -> dict[str, dict[str, Any]]:
    text = (PRESETS_DIR / filename).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _spec_from_table(cls: type, name: str, table: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys for {cls.__name__} {name!r}: {', '.join(unknown)}")
    values = dict(table)
    values.setdefault("name", name)
    if "aliases" in values:
        values["aliases"] = tuple(values["aliases"])
    return cls(**values)


def _presets(cls: type, filename: str) -> dict[str, Any]:
    return {name: _spec_from_table(cls, name, table, filename) for name, table in _read_preset_tables(filename).items()}


def hardware_presets() -> dict[str, HardwareSpec]:
    return _presets(HardwareSpec, HARDWARE_PRESETS_FILE)


def model_presets() -> dict[str, ModelSpec]:
    return _presets(ModelSpec, MODEL_PRESETS_FILE)


def _find_preset(presets: dict[str, Any], wanted: str) -> Any | None:
    key = wanted.strip().lower()
    for name, spec in presets.items():
        names = {name.lower(), *(alias.lower() for alias in spec.aliases)}
        if getattr(spec, "hf_id", ""):
            names.add(spec.hf_id.lower())
        if key in names:
            return spec
    return None


def _load_toml_spec(cls: type, path: Path, wanted: str | None) -> Any:
    tables = tomllib.loads(path.read_text(encoding="utf-8"))
    if tables and all(not isinstance(value, dict) for value in tables.values()):
        return _spec_from_table(cls, path.stem, tables, str(path))
    if wanted is None:
        if len(tables) != 1:
            raise ValueError(f"{path} holds {len(tables)} specs; say which with {path}:NAME")
        wanted = next(iter(tables))
    if wanted not in tables:
        raise ValueError(f"{path} has no table {wanted!r}; it has: {', '.join(tables)}")
    return _spec_from_table(cls, wanted, tables[wanted], str(path))


def _split_toml_selector(name_or_path: str) -> tuple[Path, str | None] | None:
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path, None
    head, sep, table = name_or_path.rpartition(":")
    if sep and head.endswith(".toml"):
        return Path(head), table
    return None


def load_hardware(name_or_path: str | Path) -> HardwareSpec:
    """A hardware preset by name or alias (``h100``), or a TOML file (``calib.toml[:TABLE]``)."""
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    text = str(name_or_path)
    selector = _split_toml_selector(text)
    if selector is not None:
        return _load_toml_spec(HardwareSpec, *selector)
    presets = hardware_presets()
    found = _find_preset(presets, text)
    if found is None:
        raise ValueError(f"unknown hardware {text!r}; presets: {', '.join(presets)} (or a .toml file)")
    return found


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A model preset (name, alias or Hugging Face id), a local model folder or its
    ``config.json``, or a TOML file (``model.toml[:TABLE]``)."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    text = str(name_or_path)
    selector = _split_toml_selector(text)
    if selector is not None:
        return _load_toml_spec(ModelSpec, *selector)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return model_from_hf_config(json.loads((path / "config.json").read_text()), name=path.name, source=str(path))
    if path.is_file() and path.suffix == ".json":
        return model_from_hf_config(json.loads(path.read_text()), name=path.parent.name, source=str(path))
    presets = model_presets()
    found = _find_preset(presets, text)
    if found is None:
        raise ValueError(f"unknown model {text!r}; presets: {', '.join(presets)} (or a folder with config.json)")
    return found


# --------------------------------------------------------------------------------------------
# Hugging Face config.json
# --------------------------------------------------------------------------------------------

_NON_GATED_MODEL_TYPES = frozenset(
    {"opt", "gpt2", "gpt_neox", "gptj", "gpt_bigcode", "bloom", "falcon", "phi", "starcoder2"}
)


def _first(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return default


def _weight_dtype_from_quantization(quantization: dict[str, Any] | None, fallback: str) -> str:
    if not quantization:
        return fallback
    method = str(quantization.get("quant_method", "")).lower()
    if "fp8" in method:
        return "fp8"
    bits = quantization.get("bits") or quantization.get("w_bit") or quantization.get("weight_bits")
    if bits is None:
        for group in (quantization.get("config_groups") or {}).values():
            weights = group.get("weights") or {}
            bits = weights.get("num_bits")
            if str(weights.get("type", "")).lower() == "float" and bits == 8:
                return "fp8"
            if bits:
                break
    if bits in (4, "4"):
        return "int4"
    if bits in (8, "8"):
        return "int8"
    return fallback


def model_from_hf_config(config: dict[str, Any], name: str = "local", source: str = "config.json") -> ModelSpec:
    """Read a Hugging Face ``config.json`` (Llama, Mistral/Mixtral, Qwen2/MoE, OPT, …) into a spec."""
    text = config.get("text_config")
    if isinstance(text, dict) and "hidden_size" in text:
        outer_quant = config.get("quantization_config")
        config = {**text, **({"quantization_config": outer_quant} if outer_quant else {})}
    model_type = str(config.get("model_type", "")).lower()
    hidden = int(_first(config, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(config, "num_attention_heads", "n_head"))
    kv_heads = int(_first(config, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(_first(config, "head_dim", default=hidden // heads))
    num_experts = int(_first(config, "num_local_experts", "num_experts", "n_routed_experts", default=0) or 0)
    if num_experts:
        intermediate = int(_first(config, "moe_intermediate_size", "intermediate_size"))
    else:
        intermediate = int(_first(config, "intermediate_size", "ffn_dim", "n_inner", default=4 * hidden))
    gated = model_type not in _NON_GATED_MODEL_TYPES
    dtype = normalize_dtype(_first(config, "dtype", "torch_dtype", default="bfloat16"))
    if dtype == "float32":
        dtype = "bfloat16"  # served in half precision; fp32 checkpoints are an export detail
    window = _first(config, "sliding_window", default=0) or 0
    if config.get("use_sliding_window") is False:
        window = 0
    return ModelSpec(
        name=name,
        hidden_size=hidden,
        num_layers=int(_first(config, "num_hidden_layers", "n_layer", "num_layers")),
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=int(config["vocab_size"]),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", model_type == "opt")),
        gated_mlp=gated,
        num_experts=num_experts,
        experts_per_token=int(_first(config, "num_experts_per_tok", "moe_top_k", default=0) or 0) if num_experts else 0,
        shared_expert_intermediate_size=int(config.get("shared_expert_intermediate_size") or 0),
        sliding_window=int(window),
        weight_dtype=_weight_dtype_from_quantization(config.get("quantization_config"), dtype),
        kv_cache_dtype=dtype,
        activation_dtype=dtype if dtype in ("bfloat16", "float16") else "bfloat16",
        source=f"config.json read from {source}",
    )


def hardware_to_toml(spec: HardwareSpec) -> str:
    """One ``[name]`` table, the format of ``presets/hardware.toml`` (for calibrate's output)."""
    lines = [f"[{spec.name}]"]
    for f in fields(spec):
        if f.name == "name":
            continue
        value = getattr(spec, f.name)
        if value is None or value == () or value == "":
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6e}"
    return str(value)


__all__ = [
    "BYTES_PER_ELEMENT",
    "HardwareSpec",
    "ModelSpec",
    "dtype_bytes",
    "hardware_presets",
    "hardware_to_toml",
    "load_hardware",
    "load_model",
    "model_from_hf_config",
    "model_presets",
    "normalize_dtype",
]
