"""Settings of `specgate serve`: CLI flags and `SPECGATE_*` environment variables."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPECGATE_",
        cli_prog_name="specgate serve",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        extra="ignore",
    )

    model: str | None = Field(
        default=None,
        description="Local Hugging Face model folder to serve. Default: the embedded "
        "SmolLM2-135M-Instruct, prepared on first use.",
    )
    served_model_name: str | None = Field(
        default=None, description="Model id clients send and /v1/models lists. Default: the folder name."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    speculative: str = Field(
        default="ngram",
        description="Speculative decoding: 'ngram' (prompt lookup), 'off', or 'draft:PATH' "
        "(a draft model folder). Ignored when --speculative-config is given.",
    )
    gamma_max: int = Field(default=4, ge=1, le=32, description="Largest draft length γ the engine may use.")
    gamma_policy: str = Field(
        default="adaptive",
        description="How γ is chosen each step: 'adaptive' (roofline + live acceptance), 'fixed:K', "
        "'table:[[lo,hi,K],...]' (vLLM's batch-size table) or 'off'. Switch at run time with PUT /v1/speculative.",
    )
    hardware: str | None = Field(
        default=None,
        description="Roofline hardware preset or TOML file (see `specgate roofline presets`). Default: detected.",
    )
    speculative_config: str | None = Field(
        default=None, description="JSON passed to vLLM's --speculative-config verbatim (overrides --speculative)."
    )
    max_model_len: int = Field(default=2048, ge=16, description="Context length limit (prompt + output).")
    max_num_seqs: int | None = Field(default=None, ge=1, description="Most sequences in one batch (vLLM default if unset).")
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Fraction of accelerator memory for weights + KV cache. On the CPU backend: "
        "fraction of the NUMA node's memory for KV cache. Default: 0.3 on CPU, vLLM's default on GPU.",
    )
    enforce_eager: bool | None = Field(
        default=None, description="Disable CUDA graphs / torch.compile. Default: on for CPU, off for GPU."
    )
    dtype: str = Field(default="auto", description="Weight and activation dtype (auto, bfloat16, float16, float32).")
    seed: int = Field(default=0, description="Engine seed.")
    vllm_args: str = Field(
        default="",
        description="Extra vLLM engine flags, passed through verbatim, e.g. \"--max-num-batched-tokens 4096\".",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")

    # -- access -----------------------------------------------------------------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys; clients send `Authorization: Bearer KEY`. Prefer the "
        "SPECGATE_API_KEYS variable or --api-key-file to a flag (flags show in `ps`).",
    )
    api_key_file: Path | None = Field(
        default=None, description="File of API keys, one per line ('#' starts a comment)."
    )
    admin_api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated admin keys: they open the admin routes (PUT /v1/speculative) and "
        "every other route. With keys configured and no admin key, admin routes answer 403.",
    )
    admin_api_key_file: Path | None = Field(default=None, description="File of admin keys, one per line.")
    metrics_require_auth: bool = Field(
        default=False, description="Require an API key on /metrics too (/health is always open)."
    )
    allow_remote_without_keys: bool = Field(
        default=False,
        description="Serve a non-loopback --host with no API keys configured. Without it the gateway "
        "refuses to start unauthenticated on anything but loopback.",
    )
    # -- limits -----------------------------------------------------------------------------
    max_queued_requests: int | None = Field(
        default=None,
        ge=0,
        description="Sequences admitted beyond the engine's batch (max_num_seqs) to wait in its queue; "
        "past running + queued the gateway answers 429 with Retry-After. A request counts n × prompts "
        "sequences until its response (or stream) ends. Default: max_num_seqs.",
    )
    retry_after_seconds: int = Field(default=1, ge=0, description="Retry-After of a 429.")
    request_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest a generation request may take, queueing included; past it the engine "
        "request is aborted: 504 before the response starts, an error event on a stream.",
    )
    reject_unknown_parameters: bool = Field(
        default=True,
        description="400 for request parameters the server does not implement (vLLM ignores them "
        "silently). Off: accept and ignore them, as vLLM does.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Largest request body (413 past it).")
    # -- failure and shutdown ---------------------------------------------------------------
    exit_on_engine_death: bool = Field(
        default=True,
        description="Exit with status 1 when the engine core dies (after answering 503 for a moment), "
        "so a supervisor restarts the gateway. Off: keep serving 503 until restarted by hand.",
    )
    drain_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to this long "
        "(then abort them), shut the engine down, exit 0.",
    )

    @field_validator("speculative")
    @classmethod
    def _check_speculative(cls, value: str) -> str:
        if value in ("ngram", "off") or (value.startswith("draft:") and len(value) > len("draft:")):
            return value
        raise ValueError("must be 'ngram', 'off' or 'draft:PATH'")

    @field_validator("gamma_policy")
    @classmethod
    def _check_gamma_policy(cls, value: str) -> str:
        from server.controller.policy import GammaPolicy

        return str(GammaPolicy.parse(value))

    @field_validator("speculative_config")
    @classmethod
    def _check_speculative_config(cls, value: str | None) -> str | None:
        if value is not None and not isinstance(json.loads(value), dict):
            raise ValueError("must be a JSON object")
        return value

    @model_validator(mode="after")
    def _check_model_folder(self) -> "ServeSettings":
        if self.model is not None and not (Path(self.model) / "config.json").is_file():
            raise ValueError(f"--model {self.model!r} is not a model folder (no config.json)")
        return self
