"""Step cost of one decoder forward pass: C(B, q, S) = Σ_ops max(FLOPs / peak, bytes / bandwidth).

A step runs B sequences with q query tokens each (T = B·q tokens) against S cached positions.
Each operation is priced on its own roofline and the prices are summed (the component-wise
estimator credited by "Roofline Model for Estimating Speculative Decoding Speedup in LLM
Inference"; see also Williams, Waterman, Patterson 2009, "Roofline"). For a dense layer with
hidden d, heads h, KV heads h_kv, head dim d_h, FFN width f and L = attended positions:

* linear layers: 2·T·P FLOPs, P·b_w weight bytes read once per step (plus activations);
* attention: 4·B·h·q·L·d_h FLOPs (QKᵀ and PV over all query heads), KV read
  2·B·L·h_kv·d_h·b_kv bytes (over the KV heads only: GQA/MQA), independent of q;
* KV-cache write: 2·T·h_kv·d_h·b_kv bytes;
* MoE experts: FLOPs for the k routed experts of each token, weight bytes for the experts the
  T tokens touch, E·(1 − (1 − k/E)^T) of E in expectation under uniform routing;
* LM head: 2·T·d·V FLOPs, V·d weight bytes, T·V logits written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from roofline.specs import HardwareSpec, ModelSpec, dtype_bytes

ELEMENTWISE_PASSES_PER_LAYER = 10
"""Two RMSNorms (read + write d each) and two residual adds (read 2d, write d each): 10·d
activation elements per token per layer."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One kind of operation in a step, ``count`` instances of it (one per layer, or one).

    Per instance, with T = B·q tokens and L attended positions:
    FLOPs = flops_per_token·T + flops_per_token_position·T·L
    bytes = bytes_fixed + bytes_per_token·T + bytes_per_sequence_position·B·L
            + bytes_per_touched_expert·touched_experts(T)
    """

    name: str
    count: int
    compute_dtype: str
    flops_per_token: float = 0.0
    flops_per_token_position: float = 0.0
    bytes_fixed: float = 0.0
    bytes_per_token: float = 0.0
    bytes_per_sequence_position: float = 0.0
    bytes_per_touched_expert: float = 0.0
    num_experts: int = 0
    experts_per_token: int = 0

    def touched_experts(self, tokens: float) -> float:
        """Expected distinct experts hit when each of ``tokens`` tokens picks k of E uniformly."""
        if not self.num_experts:
            return 0.0
        miss = 1.0 - self.experts_per_token / self.num_experts
        return self.num_experts * (1.0 - miss**tokens)

    def flops(self, batch: int, query_len: int, context: int) -> float:
        tokens = batch * query_len
        return self.count * (self.flops_per_token * tokens + self.flops_per_token_position * tokens * context)

    def bytes(self, batch: int, query_len: int, context: int) -> float:
        tokens = batch * query_len
        return self.count * (
            self.bytes_fixed
            + self.bytes_per_token * tokens
            + self.bytes_per_sequence_position * batch * context
            + self.bytes_per_touched_expert * self.touched_experts(tokens)
        )


@functools.lru_cache(maxsize=64)
def operations(model: ModelSpec) -> tuple[Operation, ...]:
    """The operations of one forward pass of ``model``, FLOP and byte coefficients only."""
    d, layers = model.hidden_size, model.num_layers
    b_w = dtype_bytes(model.weight_dtype)
    b_kv = dtype_bytes(model.kv_cache_dtype)
    b_a = dtype_bytes(model.activation_dtype)
    qkv_width = model.attention_width + 2 * model.kv_width
    m = model.mlp_matrices
    weights, activations = model.weight_dtype, model.activation_dtype

    def mlp(name: str, width: int, count: int = layers) -> Operation:
        return Operation(
            name,
            count,
            weights,
            flops_per_token=2 * m * d * width,
            bytes_fixed=m * d * width * b_w,
            bytes_per_token=(2 * d + 2 * m * width) * b_a,
        )

    ops = [
        Operation(
            "qkv_proj",
            layers,
            weights,
            flops_per_token=2 * d * qkv_width,
            bytes_fixed=d * qkv_width * b_w,
            bytes_per_token=(d + qkv_width) * b_a,
        ),
        Operation(
            "attention",
            layers,
            activations,
            flops_per_token_position=4 * model.attention_width,
            bytes_per_token=2 * model.attention_width * b_a,
            bytes_per_sequence_position=2 * model.kv_width * b_kv,
        ),
        Operation("kv_cache_write", layers, activations, bytes_per_token=2 * model.kv_width * b_kv),
        Operation(
            "o_proj",
            layers,
            weights,
            flops_per_token=2 * model.attention_width * d,
            bytes_fixed=model.attention_width * d * b_w,
            bytes_per_token=(model.attention_width + d) * b_a,
        ),
    ]
    if model.is_moe:
        experts, k, f = model.num_experts, model.experts_per_token, model.intermediate_size
        ops.append(
            Operation(
                "router",
                layers,
                weights,
                flops_per_token=2 * d * experts,
                bytes_fixed=d * experts * b_w,
                bytes_per_token=(d + experts) * b_a,
            )
        )
        ops.append(
            Operation(
                "experts",
                layers,
                weights,
                flops_per_token=2 * k * m * d * f,
                bytes_per_token=k * (2 * d + 2 * m * f) * b_a,
                bytes_per_touched_expert=m * d * f * b_w,
                num_experts=experts,
                experts_per_token=k,
            )
        )
    else:
        ops.append(mlp("mlp", model.intermediate_size))
    if model.shared_expert_intermediate_size:
        ops.append(mlp("shared_expert", model.shared_expert_intermediate_size))
    ops.append(
        Operation("norms_and_residuals", layers, activations, bytes_per_token=ELEMENTWISE_PASSES_PER_LAYER * d * b_a)
    )
    # Embeddings and LM head stay in the activation dtype: quantisation recipes skip them.
    ops.append(Operation("embedding", 1, activations, bytes_per_token=2 * d * b_a))
    ops.append(Operation("final_norm", 1, activations, bytes_per_token=2 * d * b_a))
    ops.append(
        Operation(
            "lm_head",
            1,
            activations,
            flops_per_token=2 * d * model.vocab_size,
            bytes_fixed=model.vocab_size * d * b_a,
            bytes_per_token=(d + model.vocab_size) * b_a,
        )
    )
    return tuple(ops)


@dataclass(frozen=True, slots=True)
class OperationCost:
    name: str
    flops: float
    bytes: float
    compute_seconds: float
    memory_seconds: float

    @property
    def seconds(self) -> float:
        return max(self.compute_seconds, self.memory_seconds)

    @property
    def compute_bound(self) -> bool:
        return self.compute_seconds > self.memory_seconds


@dataclass(frozen=True, slots=True)
class StepCost:
    """The priced operations of one step and their totals."""

    operations: tuple[OperationCost, ...]
    overhead_seconds: float = 0.0

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.operations)

    @property
    def bytes(self) -> float:
        return sum(op.bytes for op in self.operations)

    @property
    def roofline_seconds(self) -> float:
        return sum(op.seconds for op in self.operations)

    @property
    def seconds(self) -> float:
        return self.overhead_seconds + self.roofline_seconds

    @property
    def compute_bound_fraction(self) -> float:
        """Share of the roofline time spent in operations limited by compute."""
        total = self.roofline_seconds
        return sum(op.seconds for op in self.operations if op.compute_bound) / total if total else 0.0

    @property
    def bound(self) -> str:
        """``compute`` when compute-limited operations take most of the step, else ``memory``."""
        return "compute" if self.compute_bound_fraction > 0.5 else "memory"

    def operation(self, name: str) -> OperationCost:
        for op in self.operations:
            if op.name == name:
                return op
        raise KeyError(name)


def _check_step(batch: int, query_len: int, seq_len: int) -> None:
    if batch < 1 or query_len < 1 or seq_len < 0:
        raise ValueError(f"need batch ≥ 1, query_len ≥ 1, seq_len ≥ 0; got {batch}, {query_len}, {seq_len}")


def step_cost(
    model: ModelSpec,
    hardware: HardwareSpec,
    batch: int,
    query_len: int,
    seq_len: int,
    overhead_seconds: float = 0.0,
) -> StepCost:
    """Every operation of one step priced on ``hardware``'s roofline."""
    _check_step(batch, query_len, seq_len)
    context = model.attention_context(seq_len)
    bandwidth = hardware.memory_bandwidth_bytes_per_second
    priced = []
    for op in operations(model):
        flops = op.flops(batch, query_len, context)
        moved = op.bytes(batch, query_len, context)
        priced.append(
            OperationCost(op.name, flops, moved, flops / hardware.peak_flops_for(op.compute_dtype), moved / bandwidth)
        )
    return StepCost(tuple(priced), overhead_seconds)


def step_time_seconds(
    model: ModelSpec,
    hardware: HardwareSpec,
    batch: int,
    query_len: int,
    seq_len: int,
    overhead_seconds: float = 0.0,
) -> float:
    """C(B, q, S) + t0 in seconds."""
    return step_cost(model, hardware, batch, query_len, seq_len, overhead_seconds).seconds


def fits_in_memory(model: ModelSpec, hardware: HardwareSpec, batch: int, seq_len: int) -> bool:
    """Weights plus the KV cache of ``batch`` sequences of ``seq_len`` fit the device memory."""
    kv = batch * model.attention_context(seq_len) * model.kv_bytes_per_token
    return model.weight_bytes + kv <= hardware.memory_capacity_bytes


__all__ = [
    "Operation",
    "OperationCost",
    "StepCost",
    "fits_in_memory",
    "operations",
    "step_cost",
    "step_time_seconds",
]
