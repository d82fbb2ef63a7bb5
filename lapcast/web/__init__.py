"""The live timing page: ``lapcast web`` serves it, reading the retained states.

``hub`` turns the session's messages into one snapshot and then deltas (no MQTT),
``app`` is the HTTP side (starlette: the page, an SSE stream, the control door),
``server`` does the broker I/O and runs uvicorn; ``static/`` is the page itself.
"""

from lapcast.web.app import WebSettings, build_app
from lapcast.web.hub import WebHub
from lapcast.web.server import page_url, serve

__all__ = ["WebHub", "WebSettings", "build_app", "page_url", "serve"]
