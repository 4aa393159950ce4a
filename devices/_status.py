"""Status helpers shared by the simulated devices."""

from __future__ import annotations

import threading
from typing import Callable

from ophyd.status import Status

from sim.clock import Clock


def finished_status() -> Status:
    """A status that is already done (for devices whose actions complete at once)."""
    status = Status()
    status.set_finished()
    return status


def after_clock(clock: Clock, seconds: float, action: Callable[[], None], obj: object = None) -> Status:
    """Run ``action`` after ``seconds`` of the clock's time and return a Status done then.

    A virtual clock advances at once and the status is finished before it is returned; a real
    clock runs the action on a timer thread so the RunEngine's loop is never blocked by a sleep.
    """
    # A status that is finished before anyone sees it needs no owner: building one with an ophyd
    # object costs a repr of the whole device (tens of microseconds, thousands of polls).
    status = Status(obj=None if clock.is_virtual or seconds <= 0 else obj)

    def finish() -> None:
        try:
            action()
        except Exception as err:  # the status carries the failure to the plan
            status.set_exception(err)
        else:
            status.set_finished()

    if clock.is_virtual or seconds <= 0:
        clock.sleep(max(seconds, 0.0))
        finish()
    else:
        threading.Timer(seconds, finish).start()
    return status
