"""The command-line flags by which ``aiompc serve`` bounds what clients may cost and who may connect, and
``aiompc infer`` connects over TLS with a token (kept here so :mod:`aiompc.nn.commands` only registers them).

``serve``: ``--max-message-size``, ``--max-sessions``, ``--max-samples``, ``--idle-timeout``, ``--session-deadline``,
``--tls-cert/--tls-key``, ``--token`` (or ``$AIOMPC_TOKEN``), ``--log-level``.
``infer``: ``--ca``, ``--token`` (or ``$AIOMPC_TOKEN``).  A ``tls://``/``wss://`` URL without ``--ca`` uses the
system's trust store.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiompc.errors import InputError
from aiompc.nn.access import access_token, client_tls, server_tls
from aiompc.session import TOKEN_ENV, ServerPolicy, default_max_sessions, parse_url

__all__ = ["add_serve_flags", "add_infer_flags", "serve_kwargs", "infer_kwargs", "setup_logging", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVE_MAX_SAMPLES = 1024
"""``serve``'s default bound on the samples one session may request (16 chunks of 64)."""


def _size(text: str) -> int:
    """``64M``, ``1G``, ``65536`` → bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 65536, 64M, 1G)") from None
    if value < 1024:
        raise argparse.ArgumentTypeError("the message size limit must be at least 1K")
    return value


def _seconds(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("a timeout must be positive (or 'off')")
    return value


def _token_help(side: str) -> str:
    return f"shared access token {side} (default: ${TOKEN_ENV}); compared in constant time, never logged"


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    """Register the limits, TLS and token flags on the ``serve`` parser."""
    defaults = ServerPolicy()
    p.add_argument("--max-message-size", type=_size, default=None,
                   help="largest message a client may send after the handshake (default: twice what an honest "
                        "session of the model's plan sends, measured at start; the other buffering limits follow "
                        "the plan too)")
    p.add_argument("--max-sessions", type=int, default=default_max_sessions(),
                   help="sessions served at once; more wait briefly, then get 'server busy' (default: 2 per CPU)")
    p.add_argument("--idle-timeout", type=_seconds, default=defaults.idle_timeout,
                   help=f"seconds a client may stay silent mid-session ('off' to disable; default {defaults.idle_timeout:g})")
    p.add_argument("--session-deadline", type=_seconds, default=defaults.session_deadline,
                   help=f"seconds any one session may last ('off' to disable; default {defaults.session_deadline:g})")
    p.add_argument("--max-samples", type=int, default=SERVE_MAX_SAMPLES,
                   help=f"samples one session may ask for (the work a client can request; default {SERVE_MAX_SAMPLES})")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS (use a tls:// or wss:// URL)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--token", help=_token_help("clients must present"))
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def add_infer_flags(p: argparse.ArgumentParser) -> None:
    """Register ``--ca`` and ``--token`` on the ``infer`` parser."""
    p.add_argument("--ca", help="PEM file of the CA(s) to verify a tls:// or wss:// server against "
                   "(default: the system's trust store)")
    p.add_argument("--token", help=_token_help("the server requires"))


def setup_logging(args: argparse.Namespace) -> None:
    """Timestamped log lines on stderr at ``--log-level``."""
    logging.basicConfig(level=getattr(logging, str(getattr(args, "log_level", "info")).upper()), format=LOG_FORMAT)


def serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``aiompc.serve`` keyword arguments from the flags: ``policy``, ``max_message_size``, ``ssl``, ``max_samples``."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    secure = parse_url(args.listen).secure
    if args.tls_cert is not None and not secure:
        raise InputError("--tls-cert needs a tls:// or wss:// --listen URL")
    if secure and args.tls_cert is None:
        raise InputError(f"{args.listen} is encrypted: give --tls-cert and --tls-key")
    if args.max_sessions < 1:
        raise InputError("--max-sessions must be at least 1")
    if args.max_samples < 1:
        raise InputError("--max-samples must be at least 1")
    policy = ServerPolicy(max_sessions=args.max_sessions, idle_timeout=args.idle_timeout,
                          session_deadline=args.session_deadline, token=access_token(args.token))
    ssl = server_tls(args.tls_cert, args.tls_key) if args.tls_cert else None
    return {"policy": policy, "max_message_size": args.max_message_size, "ssl": ssl, "max_samples": args.max_samples}


def infer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``aiompc.infer`` keyword arguments from the flags: ``ssl`` and ``token``."""
    secure = parse_url(args.connect).secure
    if args.ca is not None and not secure:
        raise InputError("--ca needs a tls:// or wss:// --connect URL")
    return {"ssl": client_tls(args.ca) if secure else None, "token": access_token(args.token)}
