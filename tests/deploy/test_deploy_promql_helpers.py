"""The lexical PromQL helpers the live Prometheus test relies on."""

from __future__ import annotations

import pytest

from deploy_paths import DASHBOARD_FILES, RULE_FILES
from deploy_promql import (
    dashboard_expressions,
    label_values_query,
    metric_selectors,
    needs_controller_metrics,
    rule_expressions,
    substitute_grafana_variables,
)


@pytest.mark.parametrize(
    ("promql", "selectors"),
    [
        ("up", ["up"]),
        ('up{job=~".*specgate.*"} == 0', ['up{job=~".*specgate.*"}']),
        ('absent(vllm:num_requests_running{job=~".*specgate.*"})', ['vllm:num_requests_running{job=~".*specgate.*"}']),
        (
            "sum by (job, instance, model_name, position) (rate(a_total[5m]))\n/ ignoring (position) group_left\n"
            "sum by (job, instance, model_name) (rate(b_total[5m]))",
            ["a_total", "b_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket{a=\"b\"}[1m])))",
            ['x_bucket{a="b"}'],
        ),
        ("specgate:r:rate5m < 0.1\nand on (job, instance)\nspecgate:d:rate5m > 0", ["specgate:r:rate5m",
                                                                                    "specgate:d:rate5m"]),
        ("x > 1.5 or x < 1 / 1.5 unless y offset 1h", ["x", "y"]),
        ("rate(x[$__rate_interval]) * 1e-9", ["x"]),
        ('label_replace(x, "dst", "$1", "src", "(a_b)")', ["x"]),
    ],
)
def test_metric_selectors(promql, selectors):
    assert metric_selectors(promql) == selectors


def test_substitute_grafana_variables():
    promql = 'rate(x{model_name=~"$model_name", instance=~"${instance}"}[$__rate_interval])'
    assert substitute_grafana_variables(promql) == 'rate(x{model_name=~".*", instance=~".*"}[1m])'
    with pytest.raises(KeyError):
        substitute_grafana_variables("rate(x[$unknown])")


def test_label_values_query():
    assert label_values_query('label_values(up{job="a"}, instance)') == 'up{job="a"}'
    assert label_values_query("label_values(instance)") is None


def test_needs_controller_metrics_follows_recording_rules():
    recorded = {"specgate:gamma:mean5m": "rate(specgate_gamma_sum[5m])", "specgate:alpha:rate5m": "rate(vllm:a[5m])"}
    assert needs_controller_metrics("specgate:gamma:mean5m == 0", recorded)
    assert not needs_controller_metrics("specgate:alpha:rate5m < 0.1", recorded)
    assert needs_controller_metrics("max(specgate_predicted_speedup) < 1", recorded)


def test_collects_every_expression_of_the_deployment():
    dashboard = [e for path in DASHBOARD_FILES for e in dashboard_expressions(path)]
    rules = [e for path in RULE_FILES for e in rule_expressions(path)]
    assert len(dashboard) > 30 and {e.source for e in dashboard} == {"dashboard", "variable"}
    assert {e.source for e in rules} == {"record", "alert"}
    ids = [e.test_id for e in dashboard + rules]
    assert len(ids) == len(set(ids))
    for expression in dashboard:
        assert metric_selectors(substitute_grafana_variables(expression.promql)), expression.test_id
