"""One small exception hierarchy for everything aiompc raises on purpose.

Every error a user can provoke (bad bytes from a peer, a peer that vanished, a wrong shape, an
insecure parameter set, a model the tool cannot run) is an :class:`AiompcError` with a message
that says what went wrong and what to do about it.  Transports live below the ``aiompc`` package
in the layering, so they import these names from here; this module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "AiompcError",
    "TransportError",
    "TransportClosed",
    "MessageTooLarge",
    "ProtocolError",
    "HandshakeError",
    "LimitExceeded",
    "PeerTimeout",
    "ServerBusy",
    "AccessDenied",
    "ParameterError",
    "InsecureParameters",
    "UndecryptableParameters",
    "InputError",
    "UnsupportedModel",
]


class AiompcError(Exception):
    """Base class of every deliberate aiompc error."""


class TransportError(AiompcError):
    """A transport could not move a message."""


class TransportClosed(TransportError):
    """The connection is closed: by us, by the peer, or because the peer vanished mid-message."""


class MessageTooLarge(TransportError):
    """A message (to send or announced by the peer) exceeds the transport's maximum size."""


class ProtocolError(AiompcError):
    """The peer sent bytes that do not follow the protocol: malformed, truncated or out of place."""


class HandshakeError(ProtocolError):
    """The session handshake failed: version, role or parameter mismatch."""


class LimitExceeded(ProtocolError):
    """The peer exceeded a resource limit of this side (buffered bytes, labels, message or decode size)."""


class PeerTimeout(TransportClosed):
    """The peer sent nothing for longer than the idle timeout, or the session ran past its deadline."""


class ServerBusy(HandshakeError):
    """The server is at its session limit; try again in a few seconds."""


class AccessDenied(HandshakeError):
    """The server requires a token and the client sent none or a wrong one."""


class ParameterError(AiompcError, ValueError):
    """A cryptographic parameter set is invalid."""


class InsecureParameters(ParameterError):
    """The parameters fall short of the required security level."""


class UndecryptableParameters(ParameterError):
    """The noise bound exceeds what decryption tolerates at the required failure probability."""


class InputError(AiompcError, ValueError):
    """A caller's input has the wrong shape, dtype or bit width."""


class UnsupportedModel(AiompcError):
    """A model uses an operator or attribute that aiompc cannot evaluate securely."""
