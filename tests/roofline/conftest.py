from __future__ import annotations

import json
from pathlib import Path

import pytest

from roofline import load_hardware, load_model


@pytest.fixture(scope="session")
def h100():
    return load_hardware("h100-sxm")


@pytest.fixture(scope="session")
def llama8b():
    return load_model("llama-3.1-8b")


@pytest.fixture(scope="session")
def smollm():
    return load_model("smollm2-135m")


@pytest.fixture
def model_folder(tmp_path: Path):
    """Write a Hugging Face style model folder holding only config.json."""

    def make(config: dict, name: str = "local-model") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        return folder

    return make
