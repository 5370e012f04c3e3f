"""deploy/k8s: every manifest parses and validates against the Kubernetes schemas, and the
objects reference each other consistently (labels/selectors, ports, probes, settings, HPA)."""

from __future__ import annotations

import shlex

import pytest
import yaml

from deploy_paths import K8S_DIR, RULE_FILES, require_module

KUBERNETES_VERSION = "1.30"
NOT_MANIFESTS = {"kustomization.yaml", "prometheus-adapter-values.yaml"}


def load_documents() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, key
            objects[key] = document | {"_file": path.name}
    return objects


OBJECTS = load_documents()
DEPLOYMENT = OBJECTS[("Deployment", "specgate")]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
SERVICE = OBJECTS[("Service", "specgate")]
CONFIG = OBJECTS[("ConfigMap", "specgate-settings")]["data"]


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def test_every_yaml_file_parses():
    for path in K8S_DIR.glob("*.yaml"):
        assert all(document is not None for document in yaml.safe_load_all(path.read_text())), path.name


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted({obj["_file"] for obj in OBJECTS.values()})
    assert kustomization["namespace"] == OBJECTS[("Namespace", "specgate")]["metadata"]["name"]
    image_name = CONTAINER["image"].split(":")[0]
    assert [image["name"] for image in kustomization["images"]] == [image_name]


CORE_OBJECTS = [key for key, obj in OBJECTS.items() if not obj["apiVersion"].startswith("monitoring.coreos.com/")]


@pytest.mark.parametrize("key", CORE_OBJECTS, ids=lambda key: f"{key[0]}/{key[1]}")
def test_core_objects_validate_against_kubernetes_schemas(key):
    validator = require_module("kubernetes_validate", "kubernetes-validate")
    document = {k: v for k, v in OBJECTS[key].items() if k != "_file"}
    validator.validate(document, KUBERNETES_VERSION, strict=True)


def test_deployment_selects_its_pods_and_service_selects_them_too():
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert matches(DEPLOYMENT["spec"]["selector"]["matchLabels"], pod_labels)
    assert matches(SERVICE["spec"]["selector"], pod_labels)


def test_ports_agree():
    (container_port,) = CONTAINER["ports"]
    (service_port,) = SERVICE["spec"]["ports"]
    assert service_port["targetPort"] == container_port["name"]
    assert int(CONFIG["SPECGATE_PORT"]) == container_port["containerPort"] == service_port["port"]
    assert CONFIG["SPECGATE_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_probes_hit_health_on_the_serving_port(probe):
    check = CONTAINER[probe]["httpGet"]
    assert check["path"] == "/health"
    (port,) = CONTAINER["ports"]
    assert check["port"] in (port["name"], port["containerPort"])


def test_servicemonitor_scrapes_the_service_metrics_port():
    monitor = OBJECTS[("ServiceMonitor", "specgate")]
    assert matches(monitor["spec"]["selector"]["matchLabels"], SERVICE["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in SERVICE["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The alerts match the scrape job by name; a ServiceMonitor's job label is the Service name.
    assert "specgate" in SERVICE["metadata"]["name"]


def test_settings_are_gateway_settings():
    settings = require_module("server.settings", "-e .")
    fields = set(settings.ServeSettings.model_fields)
    for key in CONFIG:
        if key.startswith("SPECGATE_"):
            assert key.removeprefix("SPECGATE_").lower() in fields, key
    assert ("ConfigMap", POD["containers"][0]["envFrom"][0]["configMapRef"]["name"]) in OBJECTS
    assert CONTAINER["command"] == ["specgate", "serve"] and "args" not in CONTAINER


def test_tensor_parallel_size_matches_gpus():
    vllm_args = shlex.split(CONFIG["SPECGATE_VLLM_ARGS"])
    tensor_parallel = int(vllm_args[vllm_args.index("--tensor-parallel-size") + 1])
    assert tensor_parallel > 1
    assert CONTAINER["resources"]["limits"]["nvidia.com/gpu"] == tensor_parallel
    assert CONTAINER["resources"]["requests"]["nvidia.com/gpu"] == tensor_parallel


def test_volumes_resolve():
    volumes = {volume["name"]: volume for volume in POD["volumes"]}
    assert {mount["name"] for mount in CONTAINER["volumeMounts"]} == set(volumes)
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in OBJECTS
    models_path = next(mount["mountPath"] for mount in CONTAINER["volumeMounts"] if mount["name"] == "models")
    assert CONFIG["SPECGATE_MODEL"].startswith(models_path + "/")


def test_hpa_scales_the_deployment_on_the_adapter_metric():
    hpa = OBJECTS[("HorizontalPodAutoscaler", "specgate")]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    adapter = yaml.safe_load((K8S_DIR / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert rule["seriesQuery"].startswith("vllm:num_requests_waiting{")
    assert rule["name"]["as"] in (K8S_DIR / "README.md").read_text()


def test_prometheusrule_carries_the_rule_files_groups():
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    assert sorted(OBJECTS[("PrometheusRule", "specgate")]["spec"]["groups"], key=lambda g: g["name"]) == sorted(
        groups, key=lambda g: g["name"]
    )


def test_readme_documents_the_multi_node_ray_path():
    readme = (K8S_DIR / "README.md").read_text()
    for phrase in ("--distributed-executor-backend ray", "--pipeline-parallel-size", "SPECGATE_VLLM_ARGS",
                   "prometheus-adapter"):
        assert phrase in readme, phrase
