"""vLLM `general_plugins` entry point.

vLLM calls `register()` in every process it starts (API server, engine core, workers),
so this stays import-light: it only makes sure specgate's scheduler can be named with
`--scheduler-cls specgate` in plain vLLM.
"""

SCHEDULER_QUALNAME = "server.scheduler.SpecgateScheduler"


def register() -> None:
    # Nothing to patch: vLLM resolves `scheduler_cls` by qualified name at engine start.
    return None
