"""Every PromQL expression of the deployment, evaluated by a real Prometheus scraping a live
gateway: the Debian `prometheus` binary on loopback, the committed prometheus.yml retargeted at
the gateway this module starts, the committed rule files loaded, 1 s scrape and evaluation.

What "works" means per kind of expression:
- dashboard queries, template-variable selectors and recording rules: the query parses and
  returns at least one series;
- alerts (empty while healthy, by design): the full expression parses and evaluates without
  error, and every series selector inside it (raw metrics and recorded series alike) returns data,
  so the alert watches series that exist. promtool's rule unit tests check that they fire.
Expressions reading specgate_* series (directly or through recording rules) are expected to fail
while the gateway exports none (the γ controller lands with issue 4); once any specgate_* series
is exported they must pass like the rest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deploy_paths import DASHBOARD_FILES, RULE_FILES, require_binary
from deploy_prometheus import running_prometheus
from deploy_promql import (
    dashboard_expressions,
    metric_selectors,
    needs_controller_metrics,
    rule_expressions,
    substitute_grafana_variables,
)
from loadtests.servers import running_gateway

pytestmark = pytest.mark.engine

MODEL = "SmolLM2-135M-Instruct"
CONTROLLER_PENDING = "controller metrics land with issue 4"
# Copy-heavy prompts, so ngram lookup finds drafts and some get accepted.
PASSAGE = (
    "The gateway forwards each request to the engine. The engine drafts tokens, verifies them in "
    "one pass and keeps the accepted ones. The gateway forwards each request to the engine."
)
PROMPTS = [f"Copy this text exactly, then stop:\n{PASSAGE}", f"Repeat after me: {PASSAGE}"] * 3

DASHBOARD = [e for path in DASHBOARD_FILES for e in dashboard_expressions(path)]
RULES = [e for path in RULE_FILES for e in rule_expressions(path)]
RECORDED = {e.name: e.promql for e in RULES if e.source == "record"}


def send_traffic(base_url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)

    def chat(prompt: str) -> None:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=32, temperature=0
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(chat, PROMPTS))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(prometheus, controller metrics exported?) after traffic has been scraped and the rules
    evaluated over it. Module scope: the engine stops before other test folders start theirs."""
    require_binary("prometheus")
    with running_gateway(
        ["--speculative", "ngram", "--gamma-max", "4"], log_dir=tmp_path_factory.mktemp("deploy-gateway")
    ) as gateway:
        address = gateway.root_url.removeprefix("http://")
        with running_prometheus(address, tmp_path_factory.mktemp("deploy-prometheus")) as prometheus:
            prometheus.wait_for('up{job="specgate"} == 1')
            send_traffic(gateway.base_url)
            prometheus.wait_for("increase(vllm:generation_tokens_total[1m]) > 0")
            prometheus.wait_for_more_scrapes("specgate", 3)
            metrics = httpx.get(f"{gateway.root_url}/metrics", timeout=10, trust_env=False).text
            yield prometheus, controller_metrics_exported(metrics)


def controller_metrics_exported(metrics_text: str) -> bool:
    return any(line.startswith("specgate_") for line in metrics_text.splitlines())


def expect_controller(request, promql: str, controller_exported: bool) -> None:
    if needs_controller_metrics(promql, RECORDED) and not controller_exported:
        request.applymarker(pytest.mark.xfail(strict=False, reason=CONTROLLER_PENDING))


def evaluate(prometheus, promql: str) -> list:
    body = prometheus.query(promql)
    assert body["status"] == "success", f"{promql}\n-> {body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"]


def assert_returns_data(prometheus, promql: str) -> None:
    assert evaluate(prometheus, promql), f"no series for:\n{promql}"


@pytest.mark.parametrize("expression", DASHBOARD, ids=lambda e: e.test_id)
def test_dashboard_query_returns_data(stack, request, expression):
    prometheus, controller_exported = stack
    promql = substitute_grafana_variables(expression.promql)
    result = evaluate(prometheus, promql)  # parses, whatever the data
    expect_controller(request, promql, controller_exported)
    assert result, f"no series for:\n{promql}"


@pytest.mark.parametrize("expression", [e for e in RULES if e.source == "record"], ids=lambda e: e.test_id)
def test_recording_rule_returns_data(stack, request, expression):
    prometheus, controller_exported = stack
    result = evaluate(prometheus, expression.promql)
    expect_controller(request, expression.promql, controller_exported)
    assert result, f"no series for:\n{expression.promql}"
    assert_returns_data(prometheus, expression.name)  # and Prometheus recorded it


@pytest.mark.parametrize("expression", [e for e in RULES if e.source == "alert"], ids=lambda e: e.test_id)
def test_alert_expression_evaluates_and_its_series_exist(stack, request, expression):
    prometheus, controller_exported = stack
    evaluate(prometheus, expression.promql)
    expect_controller(request, expression.promql, controller_exported)
    for selector in metric_selectors(expression.promql):
        assert_returns_data(prometheus, selector)


def test_every_rule_evaluates_without_error(stack):
    prometheus, _ = stack
    groups = prometheus.api("rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {e.name for e in RULES}
    broken = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"}
    assert not broken


def test_gateway_target_is_up(stack):
    prometheus, _ = stack
    (target,) = prometheus.api("targets")["data"]["activeTargets"]
    assert target["health"] == "up" and target["labels"]["job"] == "specgate", target.get("lastError")
