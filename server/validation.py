"""Checks the gateway adds on top of vLLM's request models, before a request reaches the engine.

vLLM's pydantic models and serving layer already answer 400 for wrong types, unknown models
(404), empty conversations, bad max_tokens / n / sampling values and prompts longer than the
context ("This model's maximum context length is N tokens..."). What they let through, and
this module refuses with a 400 in OpenAI's error shape:

* parameters the server does not know (vLLM drops them silently, e.g. `functions` or the
  removed `guided_json`, so the client would get output it did not ask for);
* chat messages with an unknown role, or a system/developer/user/tool message without content;
* more sequences (n × prompts) than the engine runs at once;

and it takes the request's remaining admission slots (see `server.admission`).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from server.admission import admit_sequences
from server.errors import SpecgateError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
ROLES_NEEDING_CONTENT = frozenset({"system", "developer", "user", "tool"})


def _reject_unknown_parameters(extra: Iterable[str] | None, raw_request: Request) -> None:
    if not extra or not raw_request.app.state.settings.reject_unknown_parameters:
        return
    names = sorted(extra)
    raise SpecgateError(
        f"Unsupported parameter(s): {', '.join(repr(n) for n in names)}. This server does not "
        "implement them; remove them from the request.", param=names[0])


def _check_messages(messages: list) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue  # vLLM's model already typed it
        role = message.get("role")
        if role not in ROLES:
            raise SpecgateError(
                f"messages[{index}].role must be one of {', '.join(sorted(ROLES))}; got {role!r}.",
                param=f"messages[{index}].role")
        if role in ROLES_NEEDING_CONTENT and message.get("content") is None:
            raise SpecgateError(f"messages[{index}] ({role}) needs 'content'.", param=f"messages[{index}].content")


def _num_prompts(prompt) -> int:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return len(prompt)
    return 1


def check_chat_request(request, raw_request: Request) -> None:
    _reject_unknown_parameters(request.model_extra, raw_request)
    _check_messages(request.messages)
    admit_sequences(raw_request.scope, raw_request.app.state.admission, request.n or 1)


def check_completion_request(request, raw_request: Request) -> None:
    _reject_unknown_parameters(request.model_extra, raw_request)
    admit_sequences(raw_request.scope, raw_request.app.state.admission, (request.n or 1) * _num_prompts(request.prompt))
