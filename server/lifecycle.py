"""Process lifecycle: engine-death watchdog, exit status, and signal handling around uvicorn.

* Engine death: vLLM's client marks the engine dead as soon as the engine-core process exits
  (it watches the process). From then on `/health` answers 503 and every `/v1/*` request
  503 (`server.admission`). The watchdog here notices within `ENGINE_POLL_SECONDS`, keeps
  answering 503 for `ENGINE_DEATH_LINGER_SECONDS` (so in-flight requests get their answer and
  probes see the 503), then asks uvicorn to exit; `specgate serve` exits with
  `ENGINE_DEAD_EXIT_STATUS` so a supervisor restarts it. `--no-exit-on-engine-death` keeps
  the process up, serving 503s.
* The engine's other processes (vLLM's workers, named `VLLM::...`) do not all follow a killed
  engine core: an orphaned worker keeps its memory and spins a core. On engine death the
  watchdog ends the ones recorded at start-up (`engine_processes`), then proceeds.
* SIGTERM / SIGINT: uvicorn's graceful shutdown stops accepting, lets in-flight requests
  (streams included) finish for up to `drain_timeout_seconds`, aborts the rest, then the
  lifespan shuts the engine down; `specgate serve` exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import psutil
import uvicorn

ENGINE_POLL_SECONDS = 0.2
ENGINE_DEATH_LINGER_SECONDS = 1.0
ENGINE_DEAD_EXIT_STATUS = 1
REAP_GRACE_SECONDS = 3.0

logger = logging.getLogger("specgate")


def engine_processes() -> list[psutil.Process]:
    """This process's descendants that vLLM started for the engine (titled `VLLM::...`)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.name().startswith("VLLM::") or any(arg.startswith("VLLM::") for arg in process.cmdline()[:1]):
                found.append(process)
    return found


def reap(processes: list[psutil.Process], grace_seconds: float = REAP_GRACE_SECONDS) -> int:
    """SIGTERM, then SIGKILL after `grace_seconds`, the processes still running (PID reuse is
    checked by psutil). Returns how many were still running."""
    alive = [p for p in processes if p.is_running()]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, stubborn = psutil.wait_procs(alive, timeout=grace_seconds)
    for process in stubborn:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return len(alive)


async def watch_engine(engine, state, *, exit_on_death: bool, processes: list[psutil.Process] = ()) -> None:
    """Wait for the engine to die; then mark `state.engine_died`, end the engine's leftover
    processes and stop the server if asked."""
    while not engine.errored:
        await asyncio.sleep(ENGINE_POLL_SECONDS)
    state.engine_died = True
    server = getattr(state, "server", None)
    # A signal began the shutdown (e.g. the whole process group got SIGTERM): the engine stopping
    # is part of the stop, not a failure.
    signalled = server is not None and getattr(server, "signalled", False)
    if exit_on_death and not signalled:
        # Set first: vLLM's own engine-error handler may stop the server before the linger ends.
        state.exit_status = ENGINE_DEAD_EXIT_STATUS
    if processes:
        leftover = await asyncio.to_thread(reap, list(processes))
        if leftover:
            logger.warning("specgate: ended %d leftover engine process(es).", leftover)
    if signalled:
        logger.warning("specgate: the engine stopped while the gateway was shutting down.")
        return
    if not exit_on_death:
        logger.error("specgate: the inference engine died; answering 503 until restarted "
                     "(exit_on_engine_death is off).")
        return
    logger.error("specgate: the inference engine died; answering 503, exiting with status %d in %.1f s.",
                 ENGINE_DEAD_EXIT_STATUS, ENGINE_DEATH_LINGER_SECONDS)
    await asyncio.sleep(ENGINE_DEATH_LINGER_SECONDS)
    if server is not None:
        server.should_exit = True


class GatewayServer(uvicorn.Server):
    """uvicorn's server, remembering whether a signal (rather than the engine's death) began its
    shutdown."""

    signalled = False

    def handle_exit(self, sig, frame) -> None:
        self.signalled = True
        super().handle_exit(sig, frame)


def keep_exit_status_on_signals() -> None:
    """uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down gracefully; with
    the default handlers that would end the process by the signal (status 143 / a traceback)
    instead of the 0 of a clean drain. These handlers make the re-raised signal a no-op;
    uvicorn installs its own over them while it serves."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
