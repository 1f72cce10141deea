"""The ``tidu`` command. Each subcommand lives in its own module here and registers a parser.

A subcommand module defines ``register(subparsers)`` which adds its parser and sets ``func`` to a
function taking the parsed arguments and returning an exit code.
"""
import argparse
import importlib
import os
import sys

# Subcommand modules, in the order `tidu --help` lists them.
COMMANDS = ["demo", "train", "evaluate", "predict", "plot", "embed", "search", "explain", "report", "graph",
            "export"]


def build_parser():
    parser = argparse.ArgumentParser(prog="tidu", description="tidu (梯度): train, evaluate and ship neural networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # that subcommand is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # `tidu ... | head` closed the pipe: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, FileNotFoundError, KeyError, RuntimeError, ImportError) as e:
        # Users get the one clear message, not a traceback; TIDU_DEBUG=1 shows the traceback.
        if os.environ.get("TIDU_DEBUG"):
            raise
        print(f"tidu {args.command}: error: {e}", file=sys.stderr)
        _abort_group()
        return 1


def _abort_group():
    """Under mpiexec, one rank's error ends the whole job (the others would wait for it forever)."""
    if "tidu.distributed" in sys.modules:
        from .. import distributed as dist
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.abort(1)


if __name__ == "__main__":
    sys.exit(main())
