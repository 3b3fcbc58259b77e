"""Stopping a run within seconds without losing finished samples.

SIGINT/SIGTERM set a flag; a forward pre-hook on the network raises :class:`RunStopped` at the next forward pass,
so even a long explainer (RISE, Occlusion) is left within one chunk of images. The samples in flight are dropped,
every committed one is kept and the run is marked ``interrupted``. A second Ctrl-C raises KeyboardInterrupt at
once (the writer thread still lands what it holds).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Optional

from torch import nn
from tqdm.auto import tqdm


class RunStopped(BaseException):
    """Raised inside the computation once a stop was requested; a BaseException, so per-sample error handling,
    which records ``Exception``, lets it through."""


class StopRequest:
    """Turns SIGINT/SIGTERM into a stop at the next forward pass of ``network``; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._hook: Any = None

    def install(self, network: nn.Module) -> None:
        self._hook = network.register_forward_pre_hook(self._check)
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _check(self, _module: nn.Module, _inputs: Any) -> None:
        if self.signum is not None and threading.current_thread() is threading.main_thread():
            raise RunStopped

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        tqdm.write(f"xaiboard: {signal.Signals(signum).name} received, stopping now and keeping every finished "
                   "sample (Ctrl-C again to stop at once)", file=sys.stderr)

    def restore(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def redeliver(self) -> None:
        """Give the signal to the handler that was there before (KeyboardInterrupt for a default SIGINT)."""
        if self.signum is not None:
            signal.raise_signal(self.signum)
