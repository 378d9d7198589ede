"""Who may connect, over what: TLS contexts from certificate files and the server policy from CLI flags.

* :func:`server_tls` — a server-side :class:`ssl.SSLContext` from a PEM certificate chain and key
  (``serve --tls-cert/--tls-key``; the URL must then be ``tls://`` or ``wss://``);
* :func:`client_tls` — a client context that verifies the server against a CA file (``infer --ca``), or the
  system's CAs when no file is given;
* :func:`access_token` — the shared token from ``--token`` or the environment variable
  :data:`~aiompc.session.TOKEN_ENV` (a server that has one refuses clients without it; it is compared in
  constant time and never logged or echoed).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from aiompc.errors import InputError
from aiompc.session import TOKEN_ENV

__all__ = ["server_tls", "client_tls", "access_token"]


def _file(path: str | os.PathLike[str], what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {str(p)!r} not found")
    return str(p)


def server_tls(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the PEM chain ``cert`` and private key ``key``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(_file(cert, "TLS certificate"), _file(key, "TLS key"))
    except ssl.SSLError as exc:
        raise InputError(f"cannot use the TLS certificate {str(cert)!r} with key {str(key)!r}: {exc}") from None
    return ctx


def client_tls(ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context verifying the server's certificate and host name against ``ca`` (a PEM
    file of trusted certificates) or the system's trust store."""
    ctx = ssl.create_default_context(cafile=_file(ca, "CA certificate") if ca is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def access_token(flag: str | None) -> str | None:
    """The token from the flag, else from ``$AIOMPC_TOKEN``, else ``None``; an empty one is an error."""
    token = flag if flag is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token:
        raise InputError(f"the access token is empty; pass --token or set ${TOKEN_ENV} to a non-empty value")
    return token
