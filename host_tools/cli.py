"""``wearface``: the one console script.  Finds verbs in ``wearface.host_tools.commands``.

Turns the packages' root errors into one line on stderr and a non-zero exit status; any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import HostToolError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearface",
        description="Face recognition for wearable boards: train, quantize, bundle, flash, monitor, enroll.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _known_errors() -> tuple:
    from wearface.firmware.errors import FirmwareError
    from wearface.kernels.errors import KernelError

    return (HostToolError, FirmwareError, KernelError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except _known_errors() as exc:
        print(f"wearface {args.verb}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"wearface {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
