"""Which log a consumer's state belongs to, and what happens when it is not the engine's.

The engine names its log (``simulator.logid``) in its status and in every catch-up
reply, and says which epoch it is at. A consumer compares that with its own state
(the folder's ``log_id``, from its checkpoint or adopted from the engine), and drops
the state, folding the current log from the start, when:

* the engine names another log (a different source under the same session id, with
  a fresh journal or the same one): ``reset: log changed``;
* the engine's epoch is older than the state's, or the engine no longer holds the
  epoch asked for (its journal was deleted): ``reset: epoch N is no longer in the
  journal``; catching up an epoch that is gone would otherwise be retried forever.

A checkpoint written before log ids belongs to an unknown log: the runner never
resumes it (``reset: checkpoint of an unknown log``) and folds from the start. An engine older than
log ids names none; then the state is kept as before.

Each reset is logged once and the health says why (``reset``). Folding from the
start is always correct, merely slower, so a reset never needs more than this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from consumers.sequencer import Sequencer
from consumers.stamps import Stamps

__all__ = ["LOG_CHANGED", "UNKNOWN_CHECKPOINT", "LogIdentity", "epoch_gone"]

log = structlog.get_logger()

LOG_CHANGED = "log changed"
UNKNOWN_CHECKPOINT = "checkpoint of an unknown log (written before log ids)"


def epoch_gone(epoch: int) -> str:
    return f"epoch {epoch} is no longer in the journal"


class LogIdentity:
    """The reset path of one consumer: what the engine says about its log, checked."""

    def __init__(self, *, consumer: str, sequencer: Sequencer, stamps: Stamps,
                 dirty: asyncio.Event, reset: str | None = None) -> None:
        self.consumer = consumer
        self.sequencer = sequencer
        self.stamps = stamps
        self._dirty = dirty
        # Why the state was last dropped (the health's ``reset``), None if never.
        self.reset: str | None = reset
        self.resets = 0
        # Called after a reset (the publisher republishes even an unmoved stamp).
        self.on_reset: list[Callable[[], None]] = []

    @property
    def log_id(self) -> str:
        return self.sequencer.folder.log_id

    def engine_says(self, log_id: str, epoch: int | None = None) -> bool:
        """The engine's status or a catch-up reply names its log and current epoch.

        True if the state was dropped (whatever came with the word is then void).
        """
        folder = self.sequencer.folder
        if log_id and log_id != folder.log_id:
            if folder.log_id:
                self._restart(log_id, LOG_CHANGED, was=folder.log_id)
                return True
            # Nothing known about the state yet: adopt the engine's log. Whatever was
            # folded or buffered before its word came is of an unknown log: drop it.
            unknown = folder.seq > 0 or self.sequencer.pending > 0
            if unknown:
                log.info("state of an unknown log dropped", consumer=self.consumer,
                         log_id=log_id, epoch=folder.epoch, seq=folder.seq)
                self.sequencer.restart(log_id)
                self._after_restart()
                return True
            folder.log_id = log_id
            return False
        if epoch and epoch < self.sequencer.target_epoch:
            self._restart(log_id or folder.log_id, epoch_gone(self.sequencer.target_epoch),
                          engine_epoch=epoch)
            return True
        return False

    def epoch_refused(self, epoch: int, current_epoch: int, error: str) -> bool:
        """A catch-up of ``epoch`` was refused while the engine is at an older one: the
        epoch is gone (its journal was deleted or replaced). True if the state was dropped."""
        if current_epoch >= epoch:
            return False
        self._restart(self.log_id, epoch_gone(epoch), engine_epoch=current_epoch,
                      error=error)
        return True

    def _restart(self, log_id: str, reason: str, **why: object) -> None:
        folder = self.sequencer.folder
        log.warning("state dropped: folding the log from the start", consumer=self.consumer,
                    reason=reason, log_id=log_id, epoch=folder.epoch, seq=folder.seq, **why)
        self.reset = reason
        self.resets += 1
        self.sequencer.restart(log_id)
        self._after_restart()

    def _after_restart(self) -> None:
        self.stamps.restart()
        for hook in self.on_reset:
            hook()
        self._dirty.set()
