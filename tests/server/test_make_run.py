"""README's `make run`: serves the embedded default, and the openai SDK streams from it."""

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from loadtests.servers import LOOPBACK, ServerProcess, free_port, wait_until_healthy

pytestmark = pytest.mark.engine
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_make_run_serves_a_streamed_chat_with_speculation(tmp_path):
    port = free_port()
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(["make", "run", f"PORT={port}", f"HOST={LOOPBACK}"], cwd=REPO_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "MAKEFLAGS": ""})
    server = ServerProcess("make-run", process, port, log_path)
    try:
        wait_until_healthy(server, timeout_seconds=900)
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
        stream = client.chat.completions.create(
            model="SmolLM2-135M-Instruct", stream=True, max_tokens=48, temperature=0,
            messages=[{"role": "user", "content": "Repeat twice: one two three four five six."}],
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text.strip()
        metrics = httpx.get(f"{server.root_url}/metrics").text
        drafts = [line for line in metrics.splitlines() if line.startswith("vllm:spec_decode_num_drafts_total")]
        assert drafts and float(drafts[0].rsplit(" ", 1)[1]) > 0
    finally:
        server.stop()
