import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# 1 GiB of KV cache per engine (vs 0.3 × the NUMA node): tests run two engines at once on a
# 24 GiB machine and need only a few thousand tokens of cache.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def embedded_model_path():
    from server.model_prep import prepare_embedded_model

    return prepare_embedded_model().path
