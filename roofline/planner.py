"""The per-step γ optimiser the online controller calls: γ* = argmax_γ S(γ) in microseconds.

Everything that depends only on (model, hardware) — each operation's FLOP and byte
coefficients divided by the peak and bandwidth that price it — is computed once; a call then
evaluates C(B, q, S) for q = 1..γ_max+1 in one sweep (a few µs), and the resulting cost
ratios are cached per (batch, sequence-length bucket), so a repeated (B, S) costs a dict
lookup plus a γ_max-long loop. Speedup model (see :mod:`roofline.speculation`):

    t(q) = t0 + t_token · B·q + scale · C(B, q, S)
    S(γ) = E(γ) · t(1) / [t(γ+1) + draft seconds(γ)]

t0 and scale come from calibration (:func:`roofline.calibration.fit_overhead_and_scale`);
t_token (default 0) is an optional per-token cost for engines whose per-token work (sampling,
small-M GEMM inefficiency on CPUs) the roofline does not see
(:func:`roofline.calibration.fit_step_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

from roofline.cost import operations
from roofline.specs import HardwareSpec, ModelSpec
from roofline.speculation import Acceptance, acceptance_by_position

DEFAULT_CACHE_ENTRIES = 4096
_EXACT_SEQ_BITS = 6
"""Sequence lengths below 2**6 are cached exactly; above, 32 buckets per octave (≤ 1.6 % off)."""


def seq_len_bucket(seq_len: int) -> int:
    """The representative sequence length of ``seq_len``'s cache bucket (its midpoint)."""
    shift = int(seq_len).bit_length() - _EXACT_SEQ_BITS
    if shift <= 0:
        return int(seq_len)
    return ((seq_len >> shift) << shift) + (1 << (shift - 1))


class StepCoefficients:
    """C(B, q, S) of one model on one hardware, as per-operation time coefficients.

    For fixed (B, L) every non-MoE operation costs max(u·T, v + w·T) seconds with T = B·q
    tokens: u from its FLOPs, v and w from its bytes. It is bandwidth-bound up to
    T* = v / (u − w) and compute-bound past it, so the sum over operations is piecewise linear
    in T and one sweep over the sorted T* prices every q. Operations that do no arithmetic
    (KV writes, norms, embedding gathers) are summed into one bandwidth-only term
    (max(0, x) = x). Routed experts, whose bytes grow with the experts touched, are priced
    per q. Pure Python: for ~20 query lengths this beats numpy's per-call overhead.
    """

    __slots__ = ("model", "hardware", "_linear_ops", "_expert_ops", "_memory_only")

    def __init__(self, model: ModelSpec, hardware: HardwareSpec):
        self.model, self.hardware = model, hardware
        bandwidth = hardware.memory_bandwidth_bytes_per_second
        linear, experts = [], []
        fixed = per_token = per_position = 0.0
        for op in operations(model):
            if op.flops_per_token == 0 and op.flops_per_token_position == 0 and not op.num_experts:
                fixed += op.count * op.bytes_fixed / bandwidth
                per_token += op.count * op.bytes_per_token / bandwidth
                per_position += op.count * op.bytes_per_sequence_position / bandwidth
                continue
            peak = hardware.peak_flops_for(op.compute_dtype)
            coefficients = (
                op.count * op.flops_per_token / peak,
                op.count * op.flops_per_token_position / peak,
                op.count * op.bytes_fixed / bandwidth,
                op.count * op.bytes_per_token / bandwidth,
                op.count * op.bytes_per_sequence_position / bandwidth,
            )
            if op.num_experts:
                miss = 1.0 - op.experts_per_token / op.num_experts
                experts.append(
                    (*coefficients, op.count * op.bytes_per_touched_expert / bandwidth, op.num_experts, miss)
                )
            else:
                linear.append(coefficients)
        self._linear_ops = tuple(linear)
        self._expert_ops = tuple(experts)
        self._memory_only = (fixed, per_token, per_position)

    def seconds(self, batch: int, query_lens: Sequence[int], seq_len: int) -> list[float]:
        """C(B, q, S) in seconds for each q of ``query_lens`` (ascending)."""
        context = self.model.attention_context(seq_len)
        positions = batch * context
        fixed, slope, per_position = self._memory_only
        const = fixed + per_position * positions
        crossings = []
        for flops_token, flops_position, bytes_fixed, bytes_token, bytes_position in self._linear_ops:
            compute_slope = flops_token + flops_position * context
            memory_fixed = bytes_fixed + bytes_position * positions
            const += memory_fixed
            slope += bytes_token
            if compute_slope > bytes_token:
                gain = compute_slope - bytes_token
                crossings.append((memory_fixed / gain, gain, memory_fixed))
        crossings.sort()
        pending, next_crossing = 0, crossings[0][0] if crossings else _INFINITY
        times = []
        for query_len in query_lens:
            tokens = batch * query_len
            while next_crossing < tokens:
                _, gain, memory_fixed = crossings[pending]
                slope += gain
                const -= memory_fixed
                pending += 1
                next_crossing = crossings[pending][0] if pending < len(crossings) else _INFINITY
            seconds = const + slope * tokens
            for op in self._expert_ops:
                seconds += _expert_seconds(op, tokens, context, positions)
            times.append(seconds)
        return times

    def seconds_one(self, batch: int, query_len: int, seq_len: int) -> float:
        return self.seconds(batch, (query_len,), seq_len)[0]


_INFINITY = float("inf")


def _expert_seconds(op: tuple, tokens: float, context: int, positions: int) -> float:
    flops_token, flops_position, bytes_fixed, bytes_token, bytes_position, bytes_expert, experts, miss = op
    touched = experts * (1.0 - miss**tokens)
    compute = (flops_token + flops_position * context) * tokens
    memory = bytes_fixed + bytes_position * positions + bytes_token * tokens + bytes_expert * touched
    return compute if compute > memory else memory


class GammaPlanner:
    """γ* and its speedup for one (model, hardware, drafter), fast enough for every step.

    Drafting cost, in the same units as the verification step:

    * ``draft_cost_ratio`` c: each draft token costs c target decode steps (c·γ per step);
    * ``draft_model``: each draft token costs one decode step of that model: the calibrated
      target decode step times the draft/target roofline ratio (uncalibrated: the draft's own
      roofline step). Scaling the whole calibrated step, not only its roofline term, keeps the
      draft's price where a calibration explains the target's steps by overheads alone;
    * ``draft_block_size`` N: a block drafter proposes up to N tokens in one pass costing
      ``draft_cost_ratio`` target steps (plus one draft-model pass over N tokens, if given);
      γ ≤ N.
    """

    __slots__ = (
        "model",
        "hardware",
        "gamma_max",
        "draft_cost_ratio",
        "overhead_seconds",
        "scale",
        "per_token_seconds",
        "draft_model",
        "draft_block_size",
        "bucket_seq_len",
        "cache_entries",
        "_target",
        "_draft",
        "_query_lens",
        "_cache",
    )

    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        gamma_max: int = 8,
        draft_cost_ratio: float = 0.0,
        overhead_seconds: float = 0.0,
        scale: float = 1.0,
        *,
        per_token_seconds: float = 0.0,
        draft_model: ModelSpec | None = None,
        draft_block_size: int | None = None,
        bucket_seq_len: bool = True,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        _coefficients: tuple[StepCoefficients, StepCoefficients | None] | None = None,
    ):
        if gamma_max < 0 or int(gamma_max) != gamma_max:
            raise ValueError(f"gamma_max must be a non-negative integer, got {gamma_max}")
        if draft_cost_ratio < 0:
            raise ValueError(f"draft_cost_ratio must be ≥ 0, got {draft_cost_ratio}")
        if overhead_seconds < 0:
            raise ValueError(f"overhead_seconds must be ≥ 0, got {overhead_seconds}")
        if per_token_seconds < 0:
            raise ValueError(f"per_token_seconds must be ≥ 0, got {per_token_seconds}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if draft_block_size is not None and draft_block_size < 1:
            raise ValueError(f"draft_block_size must be ≥ 1, got {draft_block_size}")
        self.model, self.hardware = model, hardware
        self.gamma_max = int(gamma_max) if draft_block_size is None else min(int(gamma_max), int(draft_block_size))
        self.draft_cost_ratio = float(draft_cost_ratio)
        self.overhead_seconds = float(overhead_seconds)
        self.scale = float(scale)
        self.per_token_seconds = float(per_token_seconds)
        self.draft_model = draft_model
        self.draft_block_size = draft_block_size
        self.bucket_seq_len = bucket_seq_len
        self.cache_entries = cache_entries
        if _coefficients is None:
            target = StepCoefficients(model, hardware)
            draft = StepCoefficients(draft_model, hardware) if draft_model is not None else None
        else:
            target, draft = _coefficients
        self._target, self._draft = target, draft
        self._query_lens = tuple(range(1, self.gamma_max + 2))
        self._cache: dict[tuple[int, int], tuple[tuple[float, ...], tuple[float, ...]]] = {}

    def with_calibration(
        self,
        overhead_seconds: float | None = None,
        scale: float | None = None,
        per_token_seconds: float | None = None,
    ) -> GammaPlanner:
        """A planner with a new t0, scale and/or t_token, sharing the precomputed coefficients."""
        return GammaPlanner(
            self.model,
            self.hardware,
            self.gamma_max,
            self.draft_cost_ratio,
            self.overhead_seconds if overhead_seconds is None else overhead_seconds,
            self.scale if scale is None else scale,
            per_token_seconds=self.per_token_seconds if per_token_seconds is None else per_token_seconds,
            draft_model=self.draft_model,
            draft_block_size=self.draft_block_size,
            bucket_seq_len=self.bucket_seq_len,
            cache_entries=self.cache_entries,
            _coefficients=(self._target, self._draft),
        )

    def step_seconds(self, batch: int, query_len: int, seq_len: int) -> float:
        """Predicted step time t0 + t_token·B·q + scale · C(B, q, S) (exact sequence length)."""
        roofline = self._target.seconds_one(batch, query_len, seq_len)
        return self.overhead_seconds + self.per_token_seconds * batch * query_len + self.scale * roofline

    def step_costs(self, batch: int, seq_len: int) -> tuple[float, ...]:
        """t(γ+1) + draft seconds(γ) for γ = 0..γ_max: what a step verifying γ drafts costs."""
        return self._cached(batch, seq_len)[0]

    def cost_ratios(self, batch: int, seq_len: int) -> tuple[float, ...]:
        """[t(γ+1) + draft seconds(γ)] / t(1) for γ = 0..γ_max: the speedup denominators."""
        return self._cached(batch, seq_len)[1]

    def _cached(self, batch: int, seq_len: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(step costs, cost ratios) for (batch, sequence-length bucket), computed once."""
        if self.bucket_seq_len:
            seq_len = seq_len_bucket(seq_len)
        key = (batch, seq_len)
        entry = self._cache.get(key)
        if entry is None:
            costs = self._compute_costs(batch, seq_len)
            entry = (costs, tuple(cost / costs[0] for cost in costs))
            if len(self._cache) >= self.cache_entries:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[key] = entry
        return entry

    def _compute_costs(self, batch: int, seq_len: int) -> tuple[float, ...]:
        if batch < 1 or seq_len < 0:
            raise ValueError(f"need batch ≥ 1 and seq_len ≥ 0, got {batch}, {seq_len}")
        overhead, scale, per_token = self.overhead_seconds, self.scale, self.per_token_seconds * batch
        roofline = self._target.seconds(batch, self._query_lens, seq_len)
        steps = [overhead + per_token * q + scale * r for q, r in zip(self._query_lens, roofline)]
        decode = steps[0]
        if decode <= 0.0:
            raise ValueError("predicted decode step time is zero")
        draft_share = decode / roofline[0] if roofline[0] > 0 else scale  # calibrated seconds per roofline second
        if self.draft_block_size is None:
            per_draft = self.draft_cost_ratio * decode
            if self._draft is not None:
                per_draft += draft_share * self._draft.seconds_one(batch, 1, seq_len)
            return tuple(step + gamma * per_draft for gamma, step in enumerate(steps))
        per_block = self.draft_cost_ratio * decode
        if self._draft is not None:
            per_block += draft_share * self._draft.seconds_one(batch, self.draft_block_size, seq_len)
        return (decode, *(step + per_block for step in steps[1:]))

    def speedup_curve(self, batch: int, seq_len: int, acceptance: Acceptance) -> list[float]:
        """S(γ) for γ = 0..γ_max; S(0) = 1.0."""
        ratios = self.cost_ratios(batch, seq_len)
        curve = [1.0]
        if isinstance(acceptance, (int, float)):
            alpha = _checked_alpha(acceptance)
            expected = survive = 1.0
            for gamma in range(1, len(ratios)):
                survive *= alpha
                expected += survive
                curve.append(expected / ratios[gamma])
        else:
            expected = survive = 1.0
            for gamma, p in enumerate(acceptance_by_position(acceptance, self.gamma_max), start=1):
                survive *= p
                expected += survive
                curve.append(expected / ratios[gamma])
        return curve

    def optimal(self, batch: int, seq_len: int, acceptance: Acceptance) -> tuple[int, float]:
        """(γ*, S(γ*)) over γ = 0..γ_max; γ* = 0 means do not speculate (1.0x)."""
        ratios = self.cost_ratios(batch, seq_len)
        best_gamma, best_speedup = 0, 1.0
        expected = survive = 1.0
        if isinstance(acceptance, (int, float)):
            alpha = _checked_alpha(acceptance)
            for gamma in range(1, len(ratios)):
                survive *= alpha
                expected += survive
                speedup = expected / ratios[gamma]
                if speedup > best_speedup:
                    best_gamma, best_speedup = gamma, speedup
        else:
            for gamma, p in enumerate(acceptance_by_position(acceptance, self.gamma_max), start=1):
                survive *= p
                expected += survive
                speedup = expected / ratios[gamma]
                if speedup > best_speedup:
                    best_gamma, best_speedup = gamma, speedup
        return best_gamma, best_speedup

    def __repr__(self) -> str:
        return (
            f"GammaPlanner(model={self.model.name!r}, hardware={self.hardware.name!r}, gamma_max={self.gamma_max}, "
            f"draft_cost_ratio={self.draft_cost_ratio}, overhead_seconds={self.overhead_seconds}, scale={self.scale}, "
            f"per_token_seconds={self.per_token_seconds})"
        )


def _checked_alpha(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"acceptance must be in [0, 1], got {alpha}")
    return float(alpha)


__all__ = ["GammaPlanner", "StepCoefficients", "seq_len_bucket"]
