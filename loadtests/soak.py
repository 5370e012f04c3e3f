"""Soak test: N minutes of mixed load against the gateway, with random disconnects and bad
requests, then an account of every request.

    python -m loadtests.soak --minutes 10            # starts its own gateway on loopback
    python -m loadtests.soak --base-url http://127.0.0.1:8000/v1 --api-key KEY --minutes 10

Each worker loops until the time is up, drawing one of: a streamed chat read to its end, a
whole (non-streamed) chat or completion, a stream dropped after 0-5 events, a whole request
dropped after 0.05-1 s, or a malformed / unauthenticated request; after a 429 it waits the
Retry-After (± 50 %), as the OpenAI SDK does (`--ignore-retry-after`: retry at once). The account:

* sent, completed, disconnected (on purpose), rejected 4xx (bad requests, by status), 429;
* lost: requests the gateway accepted (not 4xx, not 429, not dropped by us) that did not end in
  a complete answer (5xx, an error event, a stream without [DONE], a transport error, a client
  timeout). Must be 0;
* leaked: once the load stops, requests still in the engine (`vllm:num_requests_running` +
  `_waiting`) and admission slots still held (`specgate_admission_sequences_in_flight`). Must be 0;
* bad requests that were answered 2xx (a validation gap; must be 0);
* RSS of the gateway and its engine processes after warm-up and at the end.

Exit status 0 only if nothing was lost, leaked or wrongly accepted. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from loadtests.loopback import require_loopback_url, server_root
from loadtests.sse import DONE_SENTINEL, SseDecoder

DEFAULT_GATEWAY_ARGS = "--speculative ngram --gamma-max 4 --max-num-seqs 8 --max-queued-requests 8 --request-timeout-seconds 120"
SOAK_KEY = "sk-soak-user"
SETTLE_SECONDS = 30.0

PROMPTS = [
    "Repeat this sentence twice: the quick brown fox jumps over the lazy dog.",
    "Write a short poem about a lighthouse keeper.",
    "List five prime numbers and explain why each is prime.",
    "def fibonacci(n):\n    # complete this function and explain it",
    "Summarize: speculative decoding drafts tokens cheaply and verifies them in one pass of the large model.",
    "Translate to French: good morning, how are you today?",
    "Explain what a hash map is to a ten year old.",
    "Continue the list: Monday, Tuesday, Wednesday,",
]


@dataclass(slots=True)
class Account:
    sent: int = 0
    completed: int = 0
    disconnected: int = 0
    rejected_4xx: Counter = field(default_factory=Counter)
    rejected_429: int = 0
    lost: int = 0
    lost_reasons: Counter = field(default_factory=Counter)
    bad_accepted: int = 0
    bad_accepted_kinds: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    completion_seconds: list[float] = field(default_factory=list)
    output_tokens: int = 0

    def lose(self, reason: str) -> None:
        self.lost += 1
        self.lost_reasons[reason[:160]] += 1


def bad_requests(model: str, key: str) -> list[tuple[str, str, dict]]:
    """(kind, path, httpx request kwargs) that must each get a 4xx."""
    auth = {"Authorization": f"Bearer {key}"}
    json_headers = {**auth, "content-type": "application/json"}

    def chat(**fields):
        return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}

    return [
        ("invalid_json", "/chat/completions", {"content": b'{"model": "x", ', "headers": json_headers}),
        ("wrong_type", "/chat/completions", {"json": chat(messages="hi"), "headers": auth}),
        ("unknown_model", "/chat/completions", {"json": chat(model="no-such-model"), "headers": auth}),
        ("empty_messages", "/chat/completions", {"json": chat(messages=[]), "headers": auth}),
        ("bad_role", "/chat/completions", {"json": chat(messages=[{"role": "wizard", "content": "x"}]), "headers": auth}),
        ("negative_max_tokens", "/chat/completions", {"json": chat(max_tokens=-1), "headers": auth}),
        ("huge_max_tokens", "/chat/completions", {"json": chat(max_tokens=10**9), "headers": auth}),
        ("n_too_large", "/chat/completions", {"json": chat(n=10**4), "headers": auth}),
        ("prompt_too_long", "/completions", {"json": {"model": model, "prompt": "soak " * 5000, "max_tokens": 4}, "headers": auth}),
        ("unsupported_parameter", "/chat/completions", {"json": chat(functions=[{"name": "f"}]), "headers": auth}),
        ("missing_key", "/chat/completions", {"json": chat(), "headers": {}}),
        ("wrong_key", "/models", {"headers": {"Authorization": "Bearer sk-wrong"}, "method": "GET"}),
        ("admin_route_user_key", "/speculative", {"json": {"policy": "off"}, "headers": auth, "method": "PUT"}),
        ("body_too_large", "/chat/completions", {"content": b" " * (8 * 1024 * 1024 + 16), "headers": json_headers}),
    ]


class Soak:
    def __init__(self, base_url: str, model: str, key: str, *, seed: int, request_timeout: float,
                 max_tokens: tuple[int, int] = (8, 96), honor_retry_after: bool = True):
        self.base_url = base_url.rstrip("/")
        self.honor_retry_after = honor_retry_after
        self.max_tokens = max_tokens
        self.model, self.key = model, key
        self.auth = {"Authorization": f"Bearer {key}"}
        self.random = random.Random(seed)
        self.request_timeout = request_timeout
        self.account = Account()
        self.bad = bad_requests(model, key)

    # one request of each kind ------------------------------------------------------------

    def _chat_body(self, stream: bool) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": self.random.choice(PROMPTS)}],
                "max_tokens": self.random.randint(*self.max_tokens), "temperature": self.random.choice([0.0, 0.7]),
                "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def streamed(self, client: httpx.AsyncClient, drop_after: int | None) -> float | None:
        account = self.account
        started = time.perf_counter()
        events = 0
        try:
            async with asyncio.timeout(self.request_timeout):
                async with client.stream("POST", f"{self.base_url}/chat/completions", json=self._chat_body(True),
                                         headers=self.auth) as response:
                    if response.status_code != 200:
                        return self._answered_non_200(response, (await response.aread()).decode(errors="replace"))
                    decoder = SseDecoder()
                    async for line in response.aiter_lines():
                        data = decoder.feed_line(line)
                        if data is None:
                            continue
                        if drop_after is not None and events >= drop_after:
                            account.disconnected += 1
                            return  # leaving the block closes the connection mid-stream
                        events += 1
                        if data == DONE_SENTINEL:
                            account.completed += 1
                            account.completion_seconds.append(time.perf_counter() - started)
                            return
                        chunk = json.loads(data)
                        if chunk.get("error"):
                            return account.lose(f"stream error event: {chunk['error'].get('message')}")
                        if chunk.get("usage"):
                            account.output_tokens += chunk["usage"].get("completion_tokens", 0)
                    if drop_after is not None:
                        account.disconnected += 1  # it ended before we dropped it: still ours
                    else:
                        account.lose("stream ended without [DONE]")
        except TimeoutError:
            account.lose(f"no complete answer within {self.request_timeout:g} s")
        except httpx.HTTPError as error:
            account.lose(f"{type(error).__name__}: {error}")

    async def whole(self, client: httpx.AsyncClient, drop_after_seconds: float | None) -> float | None:
        account = self.account
        if self.random.random() < 0.5:
            path, body = "/chat/completions", self._chat_body(False)
        else:
            path = "/completions"
            body = {"model": self.model, "prompt": self.random.choice(PROMPTS), "max_tokens": self.random.randint(*self.max_tokens)}
        started = time.perf_counter()
        request = asyncio.ensure_future(client.post(f"{self.base_url}{path}", json=body, headers=self.auth,
                                                    timeout=self.request_timeout))
        if drop_after_seconds is not None:
            done, _ = await asyncio.wait([request], timeout=drop_after_seconds)
            if not done:
                request.cancel()  # httpx closes the connection
                await asyncio.gather(request, return_exceptions=True)
                account.disconnected += 1
                return
        try:
            response = await request
        except httpx.HTTPError as error:
            return account.lose(f"{type(error).__name__}: {error}")
        if response.status_code != 200:
            return self._answered_non_200(response, response.text)
        if not response.json().get("choices"):
            return account.lose("200 without choices")
        account.completed += 1
        account.completion_seconds.append(time.perf_counter() - started)
        account.output_tokens += response.json().get("usage", {}).get("completion_tokens", 0)

    async def malformed(self, client: httpx.AsyncClient) -> float | None:
        kind, path, kwargs = self.random.choice(self.bad)
        kwargs = dict(kwargs)
        method = kwargs.pop("method", "POST")
        try:
            response = await client.request(method, f"{self.base_url}{path}", timeout=60, **kwargs)
        except httpx.HTTPError as error:
            return self.account.lose(f"{kind}: {type(error).__name__}: {error}")
        status = response.status_code
        if status == 429:
            return self._answered_non_200(response, "")
        if 400 <= status < 500:
            error = response.json().get("error", {})
            if set(error) != {"message", "type", "param", "code"}:
                return self.account.lose(f"{kind}: {status} not in OpenAI error shape: {response.text[:100]}")
            self.account.rejected_4xx[status] += 1
        elif status < 400:
            self.account.bad_accepted += 1
            self.account.bad_accepted_kinds[kind] += 1
        else:
            self.account.lose(f"{kind}: {status} {response.text[:100]}")

    def _answered_non_200(self, response: httpx.Response, text: str) -> float | None:
        """Account a non-200 answer; for a 429, the Retry-After the client should wait."""
        if response.status_code == 429:
            self.account.rejected_429 += 1
            try:
                return min(float(response.headers.get("retry-after", "1")), 10.0)
            except ValueError:
                return 1.0
        self.account.lose(f"{response.status_code}: {text[:120]}")
        return None

    # the load ----------------------------------------------------------------------------

    async def one(self, client: httpx.AsyncClient) -> float | None:
        """One request of a random kind; returns the Retry-After of a 429, if it got one."""
        draw = self.random.random()
        self.account.sent += 1
        if draw < 0.50:
            kind, work = "stream", self.streamed(client, None)
        elif draw < 0.62:
            kind, work = "whole", self.whole(client, None)
        elif draw < 0.77:
            kind, work = "stream_dropped", self.streamed(client, self.random.randint(0, 5))
        elif draw < 0.85:
            kind, work = "whole_dropped", self.whole(client, self.random.uniform(0.05, 1.0))
        else:
            kind, work = "malformed", self.malformed(client)
        self.account.by_kind[kind] += 1
        return await work

    async def worker(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            retry_after = await self.one(client)
            if not self.honor_retry_after:
                retry_after = None
            # a well-behaved client waits as told after a 429 (the OpenAI SDK does), with jitter
            await asyncio.sleep((retry_after or 0) * self.random.uniform(0.5, 1.5) + self.random.uniform(0, 0.05))

    async def run(self, minutes: float, concurrency: int, on_progress) -> None:
        until = time.monotonic() + minutes * 60
        limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=self.request_timeout) as client:
            workers = [asyncio.create_task(self.worker(client, until)) for _ in range(concurrency)]
            while not all(w.done() for w in workers):
                await asyncio.wait(workers, timeout=30)
                on_progress(self.account)
            for w in workers:
                w.result()  # a bug in the soak itself must not pass silently


# the server side ---------------------------------------------------------------------------

def scrape(root_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"vllm:num_requests_running", "vllm:num_requests_waiting", "specgate_admission_sequences_in_flight",
              "specgate_admission_rejected_total", "specgate_request_timeouts_total"}
    values = dict.fromkeys(wanted, 0.0)
    text = httpx.get(f"{root_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name] += sample.value
    return values


def settle(root_url: str, within_seconds: float) -> dict[str, float]:
    deadline = time.monotonic() + within_seconds
    while True:
        values = scrape(root_url)
        leaked = (values["vllm:num_requests_running"] + values["vllm:num_requests_waiting"]
                  + values["specgate_admission_sequences_in_flight"])
        if leaked == 0 or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


def server_processes(port: int, pid: int | None) -> list[psutil.Process]:
    if pid is None:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                pid = conn.pid
                break
    if pid is None:
        return []
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def rss_mib(processes: list[psutil.Process]) -> dict[str, float]:
    out: dict[str, float] = {}
    for process in processes:
        try:
            name = process.name() if process.pid != processes[0].pid else "gateway"
            out[f"{name}[{process.pid}]"] = process.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=24, help="client workers (more than the gateway admits)")
    parser.add_argument("--base-url", default=None, help="soak this gateway (…/v1) instead of starting one")
    parser.add_argument("--api-key", default=None, help="key for --base-url (default: the one given to our gateway)")
    parser.add_argument("--gateway-args", default=DEFAULT_GATEWAY_ARGS, help="flags of the gateway this starts")
    parser.add_argument("--request-timeout", type=float, default=180.0, help="client-side limit per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="clients retry at once after a 429 (a storm) instead of waiting as told")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.base_url is not None:
        require_loopback_url(args.base_url)
    from loadtests.servers import running_gateway

    env = {"SPECGATE_API_KEYS": SOAK_KEY}
    launcher = (nullcontext(None) if args.base_url else
                running_gateway(shlex.split(args.gateway_args), env=env))
    with launcher as server:
        base_url = args.base_url or server.base_url
        key = args.api_key or SOAK_KEY
        root = server_root(base_url)
        model = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["data"][0]["id"]
        processes = server_processes(int(root.rsplit(":", 1)[1]), server.process.pid if server else None)
        soak = Soak(base_url, model, key, seed=args.seed, request_timeout=args.request_timeout,
                    honor_retry_after=not args.ignore_retry_after)
        asyncio.run(Soak(base_url, model, key, seed=args.seed + 1, request_timeout=args.request_timeout)
                    .run(0.25, args.concurrency, lambda _: None))  # warm-up: allocator and caches reach steady state
        settle(root, SETTLE_SECONDS)
        rss_start = rss_mib(processes)
        before = scrape(root)
        started = time.monotonic()

        def progress(account: Account) -> None:
            print(f"[{(time.monotonic() - started) / 60:5.1f} min] sent {account.sent}, completed {account.completed}, "
                  f"dropped {account.disconnected}, 4xx {sum(account.rejected_4xx.values())}, "
                  f"429 {account.rejected_429}, lost {account.lost}", flush=True)

        asyncio.run(soak.run(args.minutes, args.concurrency, progress))
        elapsed = time.monotonic() - started
        after = settle(root, SETTLE_SECONDS)
        rss_end = rss_mib(processes)

    account = soak.account
    leaked_engine = after["vllm:num_requests_running"] + after["vllm:num_requests_waiting"]
    leaked_slots = after["specgate_admission_sequences_in_flight"]
    seconds = sorted(account.completion_seconds)
    summary = {
        "minutes": round(elapsed / 60, 2),
        "concurrency": args.concurrency,
        "honor_retry_after": not args.ignore_retry_after,
        "sent": account.sent,
        "by_kind": dict(account.by_kind),
        "completed": account.completed,
        "disconnected_on_purpose": account.disconnected,
        "rejected_4xx": sum(account.rejected_4xx.values()),
        "rejected_4xx_by_status": {str(k): v for k, v in sorted(account.rejected_4xx.items())},
        "rejected_429": account.rejected_429,
        "lost": account.lost,
        "lost_reasons": dict(account.lost_reasons),
        "bad_requests_accepted": account.bad_accepted,
        "leaked_engine_requests": leaked_engine,
        "leaked_admission_slots": leaked_slots,
        "gateway_429s": after["specgate_admission_rejected_total"] - before["specgate_admission_rejected_total"],
        "gateway_timeouts": after["specgate_request_timeouts_total"] - before["specgate_request_timeouts_total"],
        "output_tokens": account.output_tokens,
        "completion_seconds_p50": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "completion_seconds_p99": round(seconds[int(len(seconds) * 0.99)], 2) if seconds else None,
        "rss_mib_start": {k: round(v) for k, v in rss_start.items()},
        "rss_mib_end": {k: round(v) for k, v in rss_end.items()},
        "rss_growth_mib": {k: round(rss_end[k] - v, 1) for k, v in rss_start.items() if k in rss_end},
    }
    accounted = (account.completed + account.disconnected + sum(account.rejected_4xx.values())
                 + account.rejected_429 + account.lost + account.bad_accepted)
    summary["unaccounted"] = account.sent - accounted
    print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    ok = account.lost == 0 and leaked_engine == 0 and leaked_slots == 0 and account.bad_accepted == 0 \
        and summary["unaccounted"] == 0
    return 0 if ok else 1


def render(summary: dict) -> str:
    growth = ", ".join(f"{k} {v:+.1f}" for k, v in summary["rss_growth_mib"].items())
    lines = [
        (f"soak: {summary['minutes']} min, {summary['concurrency']} clients"
         f"{'' if summary['honor_retry_after'] else ', retrying 429s at once'}"),
        f"  requests sent           {summary['sent']}  {summary['by_kind']}",
        f"  completed               {summary['completed']}",
        f"  disconnected on purpose {summary['disconnected_on_purpose']}",
        f"  rejected 4xx            {summary['rejected_4xx']}  {summary['rejected_4xx_by_status']}",
        f"  rejected 429            {summary['rejected_429']}  (gateway counted {summary['gateway_429s']:.0f})",
        f"  lost                    {summary['lost']}  {summary['lost_reasons'] or ''}",
        f"  bad requests accepted   {summary['bad_requests_accepted']}",
        f"  unaccounted             {summary['unaccounted']}",
        f"  leaked engine requests  {summary['leaked_engine_requests']:.0f}",
        f"  leaked admission slots  {summary['leaked_admission_slots']:.0f}",
        f"  gateway timeouts        {summary['gateway_timeouts']:.0f}",
        f"  output tokens           {summary['output_tokens']}",
        f"  completion p50 / p99 s  {summary['completion_seconds_p50']} / {summary['completion_seconds_p99']}",
        f"  RSS growth MiB          {growth}",
        f"  RSS MiB at start / end  {summary['rss_mib_start']} / {summary['rss_mib_end']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
