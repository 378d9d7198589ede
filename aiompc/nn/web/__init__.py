"""The browser demo, ``aiompc demo --web``: draw a digit in a page and watch it classified privately.

A small local web app plays the *client party*.  It serves a static page (:mod:`aiompc.nn.web.static`:
plain HTML/JS/CSS, no build step) and a WebSocket at ``/events`` over which the page sends the 8×8
pixels of a drawing or a sample digit and receives JSON progress events as the secure inference runs.
The client party talks to the model server over the project's own ``ws://`` transport
(:func:`aiompc.session.connect`, :func:`aiompc.nn.service.client_session`); without ``--server`` the app
starts a model server in-process.  Everything is served with ``websockets`` (its ``process_request``
answers the plain HTTP requests for the page).

Modules, one job each:

* :mod:`~aiompc.nn.web.pixels`: the page's 8×8 input, checked (:class:`~aiompc.errors.InputError`), and
  the sample digits offered in the page.
* :mod:`~aiompc.nn.web.reference`: the plaintext model the page compares the secure result with.
* :mod:`~aiompc.nn.web.events`: the JSON events the page receives.
* :mod:`~aiompc.nn.web.inference`: one private classification as the client party, emitting events.
* :mod:`~aiompc.nn.web.app`: the HTTP + WebSocket server of the page.
* :mod:`~aiompc.nn.web.command`: ``aiompc demo --web``.
"""

from __future__ import annotations

from aiompc.nn.web.app import WebDemo

__all__ = ["WebDemo"]
