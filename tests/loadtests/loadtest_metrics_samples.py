"""Prometheus text captured in the shape vLLM 0.32 exposes (see test_loadtest_metrics)."""

# Shaped like vLLM 0.32's exposition (prometheus_client, two engines, gamma = 4).
SCRAPE_BEFORE = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="smollm2"} 10.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="smollm2"} 0.0
# HELP vllm:spec_decode_num_drafts_created Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_created gauge
vllm:spec_decode_num_drafts_created{engine="0",model_name="smollm2"} 1.7954809878705902e+09
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="smollm2"} 40.0
# HELP vllm:spec_decode_num_accepted_tokens_total Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="smollm2"} 20.0
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="0"} 8.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="1"} 6.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="2"} 4.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="3"} 2.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smollm2"} 0.0
# HELP specgate_gamma Draft length chosen for the last step.
# TYPE specgate_gamma gauge
specgate_gamma 2.0
"""

SCRAPE_AFTER = """\
# HELP vllm:spec_decode_num_drafts Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="smollm2"} 70.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="smollm2"} 40.0
# TYPE vllm:spec_decode_num_draft_tokens counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="smollm2"} 280.0
vllm:spec_decode_num_draft_tokens_total{engine="1",model_name="smollm2"} 160.0
# TYPE vllm:spec_decode_num_accepted_tokens counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="smollm2"} 140.0
vllm:spec_decode_num_accepted_tokens_total{engine="1",model_name="smollm2"} 108.0
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="0"} 55.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="1"} 42.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="2"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm2",position="3"} 23.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="smollm2",position="0"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="smollm2",position="1"} 27.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="smollm2",position="2"} 22.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="smollm2",position="3"} 19.0
# TYPE specgate_gamma gauge
specgate_gamma 4.0
# TYPE specgate_acceptance_estimate gauge
specgate_acceptance_estimate{position="0"} 0.77
# TYPE specgate_steps counter
specgate_steps_total 12.0
# TYPE specgate_steps_created gauge
specgate_steps_created 1.7e9
"""
