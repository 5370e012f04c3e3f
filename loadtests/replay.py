"""Offline replay of γ policies on recorded outputs: noise-free A/B of the controller.

On this machine the same policy run twice differs by up to ~10 %, more than the differences
between good γ policies. For greedy decoding with the ngram drafter everything but the step
time is deterministic: the output tokens are fixed (speculation is lossless), the drafter's
proposal at every position is a function of the tokens before it (vLLM's own
`_find_longest_matched_ngram_and_propose_tokens`), and a draft's accepted length is its
common prefix with the recorded output. So a policy's tokens per step can be replayed exactly,
and only the step time is modelled: a line in the step's decode tokens, KV positions and
prefilled prompt tokens, fitted to the engine's own step log (`SPECGATE_STEP_LOG`). The real
`GammaController` makes the decisions, with the same inputs the scheduler gives it. Mode
`oracle` verifies exactly the drafts that will be accepted: the ceiling of any per-request γ.

Sampled traces (the `-t07` workloads) replay exactly in distribution. An ngram draft has no
probabilities (q is one-hot), so rejection sampling keeps draft x with probability
min(1, p(x)/q(x)) = p(x): the chance that the recorded sample at that position is x, and a
rejected position emits a token distributed as the recorded one given that it is not x. One
recorded output is one draw of the live process, and every policy replays the same draw
(common random numbers), where live runs of different policies follow different samples.

    specgate loadtest replay traces --workload humaneval --count 128 --out humaneval.jsonl.gz
    specgate loadtest replay traces --workload humaneval-t07 --count 128 --out humaneval-t07.jsonl.gz
    specgate loadtest replay fit steps.csv              # prints the step-time line
    specgate loadtest replay run humaneval.jsonl.gz --step-log steps.csv \
        --modes off,fixed:4,adaptive,adaptive@request_rate=0.1,oracle

Offline analysis: it runs vLLM in-process (traces) and the controller directly, no server.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from loadtests.bench_gamma_policies import DEFAULT_MODES, geomean


@dataclass(slots=True, frozen=True)
class Trace:
    prompt: tuple[int, ...]
    output: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class StepTimeModel:
    """seconds = fixed + per_token · decode tokens + per_kv_position · Σ context
    + per_prefill_token · prompt tokens prefilled in the step."""

    fixed_seconds: float
    per_token_seconds: float
    per_kv_position_seconds: float
    per_prefill_token_seconds: float = 0.0

    def seconds(self, tokens: int, kv_positions: int, prefill_tokens: int = 0) -> float:
        return (self.fixed_seconds + self.per_token_seconds * tokens + self.per_kv_position_seconds * kv_positions
                + self.per_prefill_token_seconds * prefill_tokens)


def fit_step_time(step_log: Path) -> StepTimeModel:
    """Least squares: the decode line over the decode-only steps' periods; the price of a prefill
    token over the other steps, timed from one row's `entered_seconds` to the next (the engine
    went straight on if that gap is below a second), with the decode line held fixed."""
    rows = list(csv.DictReader(open_text(step_log)))
    decode = [r for r in rows if r["period_seconds"] and r["decode_only"] == "1"]
    if len(decode) < 3:
        raise ValueError(f"{step_log}: need ≥ 3 timed decode-only steps, found {len(decode)}")
    design = np.array([[1.0, float(r["tokens"]), float(r["batch"]) * float(r["seq_len"])] for r in decode])
    seconds = np.array([float(r["period_seconds"]) for r in decode])
    fixed, per_token, per_position = (max(0.0, float(c)) for c in np.linalg.lstsq(design, seconds, rcond=None)[0])
    excess, prefilled = [], []
    for row, following in itertools.pairwise(rows):
        if row["decode_only"] == "1":
            continue
        decode_tokens = int(row["batch"]) + int(row["verified_drafts"])
        prompt_tokens = int(row["tokens"]) - decode_tokens
        period = float(following["entered_seconds"]) - float(row["entered_seconds"])
        if prompt_tokens > 0 and 0 < period < 1.0:
            line = fixed + per_token * decode_tokens + per_position * int(row["batch"]) * int(row["seq_len"])
            excess.append(period - line)
            prefilled.append(prompt_tokens)
    per_prompt_token = max(0.0, float(np.dot(excess, prefilled) / np.dot(prefilled, prefilled))) if prefilled else 0.0
    return StepTimeModel(fixed, per_token, per_position, per_prompt_token)


def propose(tokens: np.ndarray, k: int) -> np.ndarray:
    """vLLM's ngram drafter on one request, configured as `specgate serve` configures it."""
    from vllm.v1.spec_decode.ngram_proposer import (
        _find_longest_matched_ngram_and_propose_tokens,
    )

    from server.engine import NGRAM_PROMPT_LOOKUP_MAX, NGRAM_PROMPT_LOOKUP_MIN

    return _find_longest_matched_ngram_and_propose_tokens(tokens, NGRAM_PROMPT_LOOKUP_MIN, NGRAM_PROMPT_LOOKUP_MAX,
                                                          1 << 20, k)


@dataclass(slots=True)
class _Live:
    request_id: str
    trace: Trace
    tokens: np.ndarray  # prompt + output, the whole recorded sequence
    generated: int = 0
    drafts: tuple[int, ...] = ()

    @property
    def context(self) -> int:
        return len(self.trace.prompt) + self.generated

    @property
    def remaining(self) -> int:
        return len(self.trace.output) - self.generated

    def accepted_length(self, drafts: Sequence[int]) -> int:
        """Greedy verification: the drafts' common prefix with the recorded output."""
        actual = self.tokens[self.context:self.context + len(drafts)]
        accepted = 0
        while accepted < len(actual) and drafts[accepted] == actual[accepted]:
            accepted += 1
        return accepted


@dataclass(slots=True)
class ReplayResult:
    output_tokens: int = 0
    seconds: float = 0.0
    steps: int = 0
    accepted_tokens: int = 0
    verified_drafts: int = 0
    steady_output_tokens: int = 0  # emitted before the last request was sent
    steady_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Steady-state, as the γ-policy bench measures it (`loadtests.stats`): until the last
        request is sent; the whole run where every request was sent at once."""
        if self.steady_seconds > 0:
            return self.steady_output_tokens / self.steady_seconds
        return self.whole_run_tokens_per_second

    @property
    def whole_run_tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds


def replay(traces: Sequence[Trace], concurrency: int, controller, step_time: StepTimeModel,
           oracle: bool = False) -> ReplayResult:
    """Closed loop: `concurrency` requests in flight, the next trace starts when one finishes.

    Mirrors `server.scheduler.SpecgateScheduler`: plan → trim drafts (the first trimmed one
    becomes a shadow draft) → verify (accepted = common prefix with the recorded output) →
    learn; the drafter proposes for the next step only when the plan asks for proposals.
    A new request's prefill joins the step it arrives in and samples its first token.
    `oracle`: the ceiling of any per-request γ, not a policy (the controller still learns)."""
    queue = list(enumerate(traces))[::-1]
    live: list[_Live] = []
    arriving: list[_Live] = []
    result = ReplayResult()
    while queue or live or arriving:
        while queue and len(live) + len(arriving) < concurrency:
            index, trace = queue.pop()
            arriving.append(_Live(f"r{index}", trace, np.array(trace.prompt + trace.output, dtype=np.int64)))
            if not queue:
                result.steady_output_tokens, result.steady_seconds = result.output_tokens, result.seconds
        kv_positions = sum(r.context for r in live)
        seq_len = kv_positions // len(live) if live else 0
        plan = controller.plan([r.request_id for r in live], seq_len)
        if oracle:  # knows the future: each request verifies exactly the drafts that will be accepted
            plan.gammas = [r.accepted_length(r.drafts) for r in live]
        shadow = {}
        tokens = verified = 0
        for request, keep in zip(live, plan.gammas):
            if len(request.drafts) > keep:
                shadow[request.request_id] = request.drafts[keep]  # the first draft not verified
                request.drafts = request.drafts[:keep]
            verified += len(request.drafts)
            tokens += 1 + len(request.drafts)
        seconds = step_time.seconds(tokens, kv_positions, sum(len(r.trace.prompt) for r in arriving))
        if live and not arriving:  # decode-only: the scheduler times these for calibration
            raw, _ = controller.predicted_step_seconds(len(live), tokens, seq_len)
            controller.observe_step(len(live), tokens, raw, seconds)
        learnt_ids, learnt_drafted, learnt_accepted = [], [], []  # one `observe` per step, as the scheduler's
        for request in live:
            accepted = request.accepted_length(request.drafts)
            drafted, kept = len(request.drafts), accepted
            if request.request_id in shadow and accepted == len(request.drafts) and request.remaining > accepted:
                token = shadow[request.request_id]  # reached: one more verified draft
                drafted, kept = drafted + 1, kept + int(token == request.tokens[request.context + accepted])
            if drafted:
                learnt_ids.append(request.request_id)
                learnt_drafted.append(drafted)
                learnt_accepted.append(kept)
            emitted = min(accepted + 1, request.remaining)
            request.generated += emitted
            result.output_tokens += emitted
            result.accepted_tokens += accepted
        controller.acceptance.observe(learnt_ids, learnt_drafted, learnt_accepted)
        result.verified_drafts += verified
        result.seconds += seconds
        result.steps += 1
        for request in arriving:  # the prefill step samples each new request's first token
            request.generated = 1
            result.output_tokens += 1
        live = [r for r in live + arriving if r.remaining > 0]
        arriving = []
        proposals = plan.proposals_next_step if plan.run_drafter else 0
        for request in live:
            context = request.tokens[:request.context]
            request.drafts = tuple(int(t) for t in propose(context, proposals)) if proposals else ()
    return result


def make_controller(model_dir: Path, hardware: str, policy: str, gamma_max: int = 8, **options):
    from roofline import load_hardware, load_model
    from server.controller.controller import ControllerConfig, GammaController
    from server.controller.policy import GammaPolicy

    config = ControllerConfig(gamma_max=gamma_max, policy=GammaPolicy.parse(policy), **options)
    return GammaController(config, load_model(model_dir), load_hardware(hardware))


def collect_traces(workload_name: str, count: int, out: Path, max_tokens: int = 128) -> None:
    """Outputs of the first `count` requests of a workload, sampled as the workload samples
    them (greedy, or `-t07`: temperature 0.7 with the request's seed), from vLLM in-process."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams

    from loadtests.workloads import load_workload
    from server.model_prep import prepare_embedded_model

    templates = load_workload(workload_name, max_tokens=max_tokens).requests
    templates = [templates[i % len(templates)] for i in range(count)]
    llm = LLM(str(prepare_embedded_model().path), enforce_eager=True, enable_prefix_caching=False)
    params = [SamplingParams(temperature=t.body.get("temperature", 0.0), seed=t.body.get("seed"), max_tokens=max_tokens)
              for t in templates]
    if all(t.endpoint == "chat" for t in templates):
        outputs = llm.chat([t.body["messages"] for t in templates], params)
    else:
        outputs = llm.generate([t.body["prompt"] for t in templates], params)
    with (gzip.open(out, "wt") if out.suffix == ".gz" else out.open("w")) as sink:
        for output in outputs:
            sink.write(json.dumps({"prompt": list(output.prompt_token_ids), "output": list(output.outputs[0].token_ids)}) + "\n")


def load_traces(path: Path) -> list[Trace]:
    return [Trace(tuple(row["prompt"]), tuple(row["output"])) for row in map(json.loads, open_text(path))]


def open_text(path: Path):
    """Plain or gzip-compressed (`.gz`) text."""
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


COMMITTED_STEP_LOG = Path(__file__).resolve().parent / "results" / "replay" / "steps.csv.gz"  # this CPU's


def add_replay_commands(parser: argparse.ArgumentParser) -> None:
    """`traces`, `fit` and `run`, each setting `handler`: for `python -m loadtests.replay` and for
    `specgate loadtest replay`."""
    sub = parser.add_subparsers(dest="replay_command", required=True)
    traces = sub.add_parser("traces", help="record a workload's outputs (greedy; sampled for the -t07 variants)")
    traces.add_argument("--workload", required=True)
    traces.add_argument("--count", type=int, default=128)
    traces.add_argument("--out", type=Path, required=True)
    traces.set_defaults(handler=lambda args: collect_traces(args.workload, args.count, args.out) or 0)
    fit = sub.add_parser("fit", help="fit the step-time line to a SPECGATE_STEP_LOG file")
    fit.add_argument("step_log", type=Path)
    fit.set_defaults(handler=lambda args: print(fit_step_time(args.step_log)) or 0)
    run = sub.add_parser("run", help="replay policies on recorded traces")
    run.add_argument("traces", type=Path, nargs="+")
    run.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    run.add_argument("--modes", default=f"{DEFAULT_MODES},oracle",
                     help="γ policies, `oracle`, and variants as policy@field=value+field=value (ControllerConfig)")
    run.add_argument("--step-log", type=Path, default=COMMITTED_STEP_LOG,
                     help="fit the step time to this SPECGATE_STEP_LOG file (default: this CPU's, committed)")
    run.add_argument("--hardware", default=ReplayPlan().hardware)
    run.add_argument("--options", default="{}", help="ControllerConfig fields for every mode, JSON")
    run.add_argument("--requests-per-worker", type=int, default=ReplayPlan().requests_per_worker,
                     help="requests per closed-loop worker (the traces are cycled)")
    run.add_argument("--min-requests", type=int, default=ReplayPlan().min_requests)
    run.add_argument("--json", type=Path, default=None)
    run.set_defaults(handler=run_replays)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_replay_commands(parser)
    args = parser.parse_args(argv)
    return args.handler(args)


@dataclass(slots=True, frozen=True)
class ReplayPlan:
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    requests_per_worker: int = 8  # closed loop: the traces are cycled, each pass as new requests
    min_requests: int = 16
    hardware: str = "cpu-local"

    def requests(self, traces: Sequence[Trace], concurrency: int) -> list[Trace]:
        count = max(self.min_requests, self.requests_per_worker * concurrency)
        return [traces[i % len(traces)] for i in range(count)]


def replay_workload(traces: Sequence[Trace], modes: Sequence[str], step_time: StepTimeModel, plan: ReplayPlan,
                    model_dir: Path, options: dict | None = None) -> dict[int, dict[str, float]]:
    """Output tokens/s (steady-state) by concurrency and mode; `oracle` is a mode too."""
    levels: dict[int, dict[str, float]] = {}
    for concurrency in plan.concurrency:
        requests = plan.requests(traces, concurrency)
        point = levels[concurrency] = {}
        for mode in modes:
            policy, overrides = parse_mode(mode)
            oracle = policy == "oracle"
            controller = make_controller(model_dir, plan.hardware, "fixed:8" if oracle else policy,
                                         **{**(options or {}), **overrides})
            point[mode] = replay(requests, concurrency, controller, step_time, oracle=oracle).tokens_per_second
    return levels


def run_replays(args) -> int:
    """Every (trace file, concurrency, mode); the issue's ratios as the γ-policy bench prints them,
    plus the oracle's ceiling over the best single fixed setting."""
    from loadtests.bench_gamma_policies import ratios_report, split_modes
    from server.model_prep import default_model_dir

    step_time = fit_step_time(args.step_log)
    print(step_time)
    plan = ReplayPlan(tuple(int(c) for c in args.concurrency.split(",")), args.requests_per_worker,
                      args.min_requests, args.hardware)
    modes = split_modes(args.modes)
    points: dict[str, dict[int, dict[str, float]]] = {}
    for path in args.traces:
        workload = path.name.split(".")[0]
        levels = points[workload] = replay_workload(load_traces(path), modes, step_time, plan, default_model_dir(),
                                                    json.loads(args.options))
        for concurrency, point in levels.items():
            print(f"{workload:<10} c={concurrency:<3}" + "".join(f"{m[:18]:>19} {v:7.1f}" for m, v in point.items()))
        print(f"{workload} geomean over concurrency, relative to {modes[0]}: " + "  ".join(
            f"{m}: {geomean([p[m] / p[modes[0]] for p in levels.values()]):.3f}" for m in modes))
    summary = {"step_time": asdict(step_time), "plan": asdict(plan), "modes": modes, "points": points}
    policies = [m for m in modes if m != "oracle" and "@" not in m]  # the ratios: policies as shipped
    if "adaptive" in policies and any(m.startswith("fixed:") for m in policies):
        without_oracle = {w: {c: {m: p[m] for m in policies} for c, p in levels.items()} for w, levels in points.items()}
        summary.update(ratios_report(without_oracle, policies))
        if "oracle" in modes:
            single = summary["best_single_fixed"]
            ceiling = geomean([p["oracle"] / p[single] for levels in points.values() for p in levels.values()])
            summary["oracle_over_best_single_geomean"] = ceiling
            print(f"oracle (knows which drafts will be accepted) / {single}, geomean: {ceiling:.3f}"
                  "  (the ceiling of any per-request γ)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def parse_mode(mode: str) -> tuple[str, dict]:
    """`adaptive@request_rate=0.1+hysteresis=0` → ("adaptive", {"request_rate": 0.1, "hysteresis": 0.0})."""
    policy, _, options = mode.partition("@")
    parsed = {}
    for item in filter(None, options.split("+")):
        key, _, value = item.partition("=")
        parsed[key] = json.loads(value)
    return policy, parsed


if __name__ == "__main__":
    raise SystemExit(main())
