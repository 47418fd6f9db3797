"""SIGTERM and SIGINT during training: note the signal, stop at the next safe point, leave a checkpoint.

A rollout round can take minutes, and Lightning only looks at SIGTERM between batches (and Python turns
SIGINT into a KeyboardInterrupt wherever the program is, which leaves nothing to resume from).
:class:`StopSignals` records the first SIGTERM or SIGINT (chaining to the handlers that were there, so
Lightning still sees its SIGTERM); the rollout engine asks it between sweeps and gives up the round, and
the simulation callback then saves a checkpoint and ends the run with :class:`RunStopped`. A second SIGINT
interrupts at once, as usual.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(SystemExit):
    """The run stopped on a signal after saving a resumable checkpoint; the exit status is 128 + the signal."""


class StopSignals:
    """Records SIGTERM/SIGINT while installed (main thread only; elsewhere it records nothing)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self.received = None
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers found at :meth:`install`, unless someone replaced ours since."""
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now, without a checkpoint
        self.received = self.received or signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)  # Lightning's notifier: it stops its loops at the next batch too

    def __call__(self) -> bool:
        """Whether a stop signal arrived (the rollout engine's ``should_stop``)."""
        return self.received is not None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
