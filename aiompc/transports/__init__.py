"""Byte-message transports: in-memory pairs, TCP, WebSocket, and a link-shaping wrapper.

A transport moves whole byte messages, in order, reliably, and knows nothing about protocols.
Failures are the typed errors of :mod:`aiompc.errors` (``TransportClosed``, ``MessageTooLarge``,
``ProtocolError``).
"""

from aiompc.transports.base import DEFAULT_MAX_MESSAGE_SIZE, Transport

__all__ = ["Transport", "DEFAULT_MAX_MESSAGE_SIZE"]
