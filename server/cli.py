"""`specgate` console script: one entry point, subcommands dispatched lazily.

Subcommands import their heavy dependencies (vLLM, torch) only when they run, so
`specgate roofline ...` stays instant and works without vLLM installed.
"""

from __future__ import annotations

import sys

USAGE = """usage: specgate <command> [options]

commands:
  serve           start the OpenAI-compatible gateway with speculative decoding
  prepare-model   build the embedded default model folder (SmolLM2-135M-Instruct)
  roofline        speculative-decoding roofline model (speedup, optimal, estimate, crossover, plot, calibrate)
  loadtest        load generator, sweeps and reports, offline replay of γ policies

`specgate <command> --help` describes each command's options.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        from server.serve import main as run
    elif command == "prepare-model":
        from server.model_prep import main as run
    elif command == "roofline":
        from roofline.cli import main as run
    elif command == "loadtest":
        from loadtests.cli import main as run
    else:
        print(f"specgate: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
