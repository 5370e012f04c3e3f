"""PromQL behind each dashboard panel, filtered by the dashboard's `model_name` and `instance`.

Ratios are ratios of summed rates (Σ rate(numerator) / Σ rate(denominator)), the same
definitions as deploy/prometheus/rules/recording.yml, but over Grafana's $__rate_interval so
panels follow the zoom level instead of a fixed 5m window.
"""

from __future__ import annotations

SELECTOR = '{model_name=~"$model_name", instance=~"$instance"}'
WINDOW = "$__rate_interval"


def rate(metric: str) -> str:
    return f"rate({metric}{SELECTOR}[{WINDOW}])"


def summed_rate(metric: str, by: str = "model_name") -> str:
    return f"sum by ({by}) ({rate(metric)})"


def ratio_of_rates(numerator: str, denominator: str, by: str = "model_name") -> str:
    return f"{summed_rate(numerator, by)}\n/\n{summed_rate(denominator, by)}"


def histogram_mean(histogram: str, by: str = "model_name") -> str:
    return ratio_of_rates(f"{histogram}_sum", f"{histogram}_count", by)


def histogram_quantile(quantile: float, histogram: str, by: str = "model_name") -> str:
    return f"histogram_quantile({quantile}, {summed_rate(f'{histogram}_bucket', f'{by}, le')})"


def gauge(metric: str, by: str = "model_name", aggregation: str = "avg") -> str:
    return f"{aggregation} by ({by}) ({metric}{SELECTOR})"


# Speculation quality, from vLLM's counters (present with any speculative method).
ACCEPTANCE_RATE = ratio_of_rates(
    "vllm:spec_decode_num_accepted_tokens_total", "vllm:spec_decode_num_draft_tokens_total"
)
# Share of drafts accepted through draft token `position` (0-based): cumulative Π_{j≤k} p_j.
ACCEPTED_THROUGH_POSITION = (
    f"{summed_rate('vllm:spec_decode_num_accepted_tokens_per_pos_total', 'model_name, position')}\n"
    f"/ ignoring (position) group_left\n"
    f"{summed_rate('vllm:spec_decode_num_drafts_total')}"
)
# Tokens emitted per verification step with a draft: bonus token + accepted drafts.
MEAN_ACCEPTED_LENGTH = "1 +\n" + ratio_of_rates(
    "vllm:spec_decode_num_accepted_tokens_total", "vllm:spec_decode_num_drafts_total"
)
DRAFT_TOKENS_PER_SECOND = summed_rate("vllm:spec_decode_num_draft_tokens_total")
ACCEPTED_TOKENS_PER_SECOND = summed_rate("vllm:spec_decode_num_accepted_tokens_total")

# Controller (specgate_* series, written by the γ controller in the engine-core process).
CONTROLLER_ACCEPTANCE_RATE = gauge("specgate_acceptance_rate")
CONTROLLER_ACCEPTANCE_BY_POSITION = gauge("specgate_acceptance_rate_by_position", "model_name, position")
# specgate_accepted_tokens_per_step counts the whole batch's accepted drafts: divide by the
# batch's requests for tokens per request per step, steps with γ = 0 included.
CONTROLLER_TOKENS_PER_REQUEST_STEP = "1 +\n" + ratio_of_rates(
    "specgate_accepted_tokens_per_step_sum", "specgate_batch_size_sum"
)
GAMMA_HEATMAP = f"sum by (le) ({rate('specgate_gamma_chosen_bucket')})"
GAMMA_MEAN = histogram_mean("specgate_gamma_chosen")
# The policy in force is 1; a replaced one stays exported at 0.
GAMMA_POLICY = f"max by (model_name, policy) (specgate_gamma_policy_info{SELECTOR} == 1)"
BATCH_SIZE_MEAN = histogram_mean("specgate_batch_size")
BATCH_SIZE_P90 = histogram_quantile(0.9, "specgate_batch_size")
PREDICTED_SPEEDUP = gauge("specgate_predicted_speedup")
PREDICTED_GOODPUT = gauge("specgate_predicted_goodput_tokens_per_second", aggregation="sum")
PREDICTED_STEP_MEAN = histogram_mean("specgate_predicted_step_seconds")
OBSERVED_STEP_MEAN = histogram_mean("specgate_observed_step_seconds")
OBSERVED_STEP_P99 = histogram_quantile(0.99, "specgate_observed_step_seconds")
DECISION_P50 = histogram_quantile(0.5, "specgate_decision_seconds")
DECISION_P99 = histogram_quantile(0.99, "specgate_decision_seconds")

# Serving (vLLM's own series).
GENERATION_TOKENS_PER_SECOND = summed_rate("vllm:generation_tokens_total")
PROMPT_TOKENS_PER_SECOND = summed_rate("vllm:prompt_tokens_total")
REQUESTS_RUNNING = gauge("vllm:num_requests_running", aggregation="sum")
REQUESTS_WAITING = gauge("vllm:num_requests_waiting", aggregation="sum")


def ttft(quantile: float) -> str:
    return histogram_quantile(quantile, "vllm:time_to_first_token_seconds")


def itl(quantile: float) -> str:
    return histogram_quantile(quantile, "vllm:inter_token_latency_seconds")


def e2e(quantile: float) -> str:
    return histogram_quantile(quantile, "vllm:e2e_request_latency_seconds")


# Crossover: one point per time step, x = batch, y = speedup or throughput. Aggregated over the
# selected models and instances so each query returns one series to pair up by timestamp.
CROSSOVER_BATCH_SIZE = (
    f"sum({rate('specgate_batch_size_sum')})\n/\nsum({rate('specgate_batch_size_count')})"
)
CROSSOVER_PREDICTED_SPEEDUP = f"avg(specgate_predicted_speedup{SELECTOR})"
CROSSOVER_RUNNING_REQUESTS = f"sum(avg_over_time(vllm:num_requests_running{SELECTOR}[{WINDOW}]))"
CROSSOVER_GENERATION_TOKENS_PER_SECOND = f"sum({rate('vllm:generation_tokens_total')})"

# Template variables: label values of a series every gateway exports.
MODEL_NAME_VALUES = "label_values(vllm:num_requests_running, model_name)"
INSTANCE_VALUES = 'label_values(vllm:num_requests_running{model_name=~"$model_name"}, instance)'
