import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedded_model_path():
    from server.model_prep import prepare_embedded_model

    return prepare_embedded_model().path
