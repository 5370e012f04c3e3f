"""PromQL used by the deployment: collected from the dashboards and rule files, Grafana's
variables substituted, and the metric selectors inside an expression listed.

The selector scan is lexical, not a full PromQL parser: it drops grouping clauses
(`by (...)`, `on (...)`, ...), then takes every identifier that is not a function, aggregation
or keyword, with its `{...}` matchers. Enough for the expressions in this repo; its tests pin
what it extracts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# What Grafana substitutes at query time, for a test Prometheus scraping every second.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "model_name": ".*",
    "instance": ".*",
}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")
_LABEL_VALUES = re.compile(r"^label_values\((?P<query>.+),\s*(?P<label>\w+)\)$", re.S)
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}


@dataclass(frozen=True)
class Expression:
    source: str  # "dashboard", "variable", "record" or "alert"
    name: str
    promql: str

    @property
    def test_id(self) -> str:
        return f"{self.source}:{self.name}"


def substitute_grafana_variables(promql: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"no test value for Grafana variable ${name} in {promql!r}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, promql)


def metric_selectors(promql: str) -> list[str]:
    """`name{matchers}` for every series selector in the expression, in order, deduplicated."""
    without_grouping = _GROUPING.sub(" ", promql)
    found: list[str] = []
    for match in _SELECTOR.finditer(without_grouping):
        name, matchers, call = match.groups()
        if call or name in KEYWORDS or _inside_string(without_grouping, match.start()):
            continue
        selector = name + (matchers or "")
        if selector not in found:
            found.append(selector)
    return found


def _inside_string(text: str, position: int) -> bool:
    return any(m.start() < position < m.end() for m in _STRING.finditer(text))


def label_values_query(variable_query: str) -> str | None:
    """The series selector inside Grafana's `label_values(selector, label)`."""
    match = _LABEL_VALUES.match(variable_query.strip())
    return match.group("query") if match else None


def iter_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_expressions(path: Path) -> list[Expression]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    found = [
        Expression("dashboard", f"{dashboard['uid']}/panel{panel['id']}.{target['refId']}", target["expr"])
        for panel in iter_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = label_values_query(variable["query"])
            name = f"{dashboard['uid']}/{variable['name']}"
            found.append(Expression("variable", name, selector or variable["query"]))
    return found


def rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def rule_expressions(path: Path) -> list[Expression]:
    return [
        Expression("record", rule["record"], rule["expr"]) if "record" in rule
        else Expression("alert", rule["alert"], rule["expr"])
        for rule in rules(path)
    ]


def needs_controller_metrics(promql: str, recorded: dict[str, str]) -> bool:
    """Whether the expression reads specgate_* series, directly or through recording rules."""
    if "specgate_" in promql:
        return True
    return any(
        needs_controller_metrics(recorded[selector.split("{")[0]], recorded)
        for selector in metric_selectors(promql)
        if selector.split("{")[0] in recorded
    )
