import pytest

from loadtests.servers import running_gateway


@pytest.fixture(scope="session")
def sd_gateway(embedded_model_path, tmp_path_factory):
    """The gateway serving the embedded model with ngram speculative decoding (γ ≤ 4).

    float32, so that greedy outputs compare exactly with SD off: in bf16 the verification
    pass (γ+1 query positions) and plain decode (1) round differently, and near-ties flip.
    """
    log_dir = tmp_path_factory.mktemp("sd-gateway")
    with running_gateway(["--speculative", "ngram", "--gamma-max", "4", "--dtype", "float32"], log_dir=log_dir,
                         env={"SPECGATE_STEP_LOG": str(log_dir / "steps.csv")}) as server:
        yield server


@pytest.fixture(scope="session")
def client(sd_gateway):
    from openai import OpenAI

    return OpenAI(base_url=sd_gateway.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def model_id(client):
    return client.models.list().data[0].id
