"""``wearface``: the one console script.  Finds verbs in ``wearface.host_tools.commands``.

Turns the packages' root errors into one line on stderr and a non-zero exit status (``exit_code``); any
other exception is a bug and keeps its traceback.
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


#: A rejected bundle (``firmware.errors.BundleError``) exits with this + its ``BundleReason`` (21..31), one
#: status per reason; the firmware knows only the reason.
BUNDLE_EXIT_BASE = 20


def exit_code(exc: BaseException) -> int:
    """The exit status of a known error: 20 + reason for a ``BundleError``, else the error class's
    ``exit_code`` (``host_tools/errors.py``), else 1."""
    from wearface.firmware.errors import BundleError

    if isinstance(exc, BundleError):
        return BUNDLE_EXIT_BASE + int(exc.reason)
    return getattr(exc, "exit_code", 1)


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
        return exit_code(exc)
    except KeyboardInterrupt:
        print(f"wearface {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
