"""The CPU sampling fixes inside vLLM's own rejection sampler, with vLLM's CPU fallback kernels
registered (in a fresh interpreter: tests/server/cpu_kernel_probe.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def observed() -> dict:
    probe = subprocess.run([sys.executable, "-m", "tests.server.cpu_kernel_probe"], cwd=REPO,
                           capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    if not result["cpu"]:
        pytest.skip("the fallback kernels are registered only on vLLM's CPU platform")
    return result


def test_vllm_rejection_sampler_expands_float_temperatures_on_cpu(observed):
    assert observed["expanded_temperatures"] == pytest.approx([0.7, 1.0, 1.0, 1.3])


def test_recovered_tokens_drawn_for_drafting_rows_only_match_vllms(observed):
    assert observed["recovered_of_drafting_rows"] == observed["recovered_by_vllm"]
    assert len(observed["recovered_by_vllm"]) == 5
    assert observed["recovered_when_nobody_drafts"] == 0
