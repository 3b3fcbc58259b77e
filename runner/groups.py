"""The run's main loop: samples explained in small groups, each committed while the next is computed.

A group is sized so that it takes about :data:`GROUP_SECONDS` (the first holds one sample, so the first result is
visible within one sample's time), never more than ``max_group`` samples. A writer thread stores group k while
group k+1 is computed (map encoding and SQLite hold the GIL only between torch's kernels, so the two overlap); at
most one group waits to be stored. The progress bar moves when a group is stored, not when the next one is done,
and names the stage being computed.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional, Union

from tqdm.auto import tqdm

from xaiboard.store import Batch, FailureRecord, SummaryWriter

from .data import BadItem, Item
from .interrupt import StopRequest
from .processing import GroupProcessor

#: seconds of work a group aims at: short enough to show results early, long enough to amortise a commit
GROUP_SECONDS = 2.0


def explain_in_groups(writer: SummaryWriter, stream: Iterator[Union[Item, BadItem]],
                      make_processor: Callable[[Callable[[str], None]], GroupProcessor], *, total: int, initial: int,
                      max_group: int, stop: StopRequest, progress: bool) -> bool:
    """Explain and store every item of ``stream`` (unreadable ones as failures of the stage ``data``);
    ``make_processor`` gets the function that shows the stage. Returns whether the stream was exhausted (False
    when a stop request cut the run short)."""
    with tqdm(total=total, initial=initial, unit="sample", desc=writer.directory.name, disable=not progress,
              dynamic_ncols=True, file=sys.stderr, smoothing=0.3) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaiboard-writer") as storing:
        shown = threading.Lock()  # the writer thread moves the bar, the main thread names the stage
        failed: set[int] = set()

        def stage(text: str) -> None:
            with shown:
                bar.set_postfix_str(f"{text}, failed={len(failed)}" if failed else text, refresh=True)

        def advance_when_stored(batch: Batch) -> Callable[[Future], None]:
            def advance(future: Future) -> None:
                if future.exception() is None:
                    with shown:
                        failed.update(f.sample_id for f in batch.failures if f.sample_id is not None)
                        bar.update(len(batch.samples))
            return advance

        processor = make_processor(stage)
        pending: Optional[Future] = None
        size = 1
        try:
            while not stop.requested:
                group = list(itertools.islice(stream, size))
                if not group:
                    break
                good = [item for item in group if isinstance(item, Item)]
                started = time.perf_counter()
                batch = processor.process(good) if good else Batch()
                batch.failures += [FailureRecord(b.id, "data", b.message, b.traceback)
                                   for b in group if isinstance(b, BadItem)]
                per_sample = (time.perf_counter() - started) / max(1, len(good))
                size = max(1, min(max_group, int(GROUP_SECONDS / max(per_sample, 1e-6))))
                if pending is not None:
                    pending.result()
                pending = storing.submit(writer.write_batch, batch)
                pending.add_done_callback(advance_when_stored(batch))
            else:
                return _landed(pending, exhausted=False)
        except BaseException:
            if pending is not None:  # let the group in flight land; the error that stopped us is the news
                pending.exception()
            raise
        return _landed(pending, exhausted=True)


def _landed(pending: Optional[Future], exhausted: bool) -> bool:
    if pending is not None:
        pending.result()
    return exhausted
