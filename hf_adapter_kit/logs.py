"""Quiet, true logs: one false alarm of ``adapters`` dropped where the kit knows it is false.

Written against adapters 1.3 (model_mixin.py, ``forward_context``); ``tests/test_logs.py`` checks the message is still
the one the library logs, and that a real forward pass without an active adapter still warns.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator


INACTIVE_WARNING = "There are adapters available but none are activated for the forward pass."


class _DropInactiveWarning(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self.thread and record.getMessage() == INACTIVE_WARNING)


@contextlib.contextmanager
def quiet_adapter_activation() -> Iterator[None]:
    """Drop ``adapters``' warning "There are adapters available but none are activated for the forward pass." while
    an adapter is added and activated (loading, attaching).

    Written against adapters 1.3 (model_mixin.py, ``forward_context``): ``set_active_adapters`` first calls
    ``reset_adapter``, which opens a ForwardContext (bookkeeping, no forward pass) before the adapter is recorded as
    active, and that context logs the warning, a false alarm on every load. Only that message, only from this
    thread, only inside the ``with``: a real forward pass without an active adapter still warns.
    """
    logger = logging.getLogger("adapters.model_mixin")
    dropper = _DropInactiveWarning()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)
