"""The live timing board: reads the retained projection states, never folds events.

``render`` draws a snapshot (pure), ``store`` keeps the newest state of every
topic, ``live`` does the MQTT reading and the steady redraw.
"""

from lapcast.board.live import BoardSettings, run_board
from lapcast.board.render import render_board
from lapcast.board.store import BoardSnapshot, BoardStore

__all__ = ["BoardSettings", "BoardSnapshot", "BoardStore", "render_board", "run_board"]
