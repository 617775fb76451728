"""``wearface``: the one console script.  Finds verbs in ``wearface.host_tools.commands``.

Turns the packages' root errors into one line on stderr and a non-zero exit status (``exit_code``); any
other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
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


#: The wings log with ``logging.getLogger(__name__)``; the CLI prints their INFO messages, the text alone.
#: These loggers' messages were a verb's own output and go to stdout; every other one's to stderr.
STDOUT_LOGGERS = ("wearface.host_tools.train.train_align",)


class _PrintHandler(logging.Handler):
    """Prints a record's message as ``print(..., flush=True)`` would, to ``sys.stdout`` (loggers in
    ``STDOUT_LOGGERS``) or ``sys.stderr`` as they are when it is written (so a test's capture sees it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            to_stdout = any(record.name == n or record.name.startswith(n + ".") for n in STDOUT_LOGGERS)
            stream = sys.stdout if to_stdout else sys.stderr
            stream.write(record.getMessage() + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging() -> None:
    """INFO and above of ``wearface.host_tools.*`` printed (once per process, however often main runs)."""
    root = logging.getLogger("wearface.host_tools")
    if not any(isinstance(h, _PrintHandler) for h in root.handlers):
        root.addHandler(_PrintHandler(logging.INFO))
    root.setLevel(logging.INFO)


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
    configure_logging()
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
