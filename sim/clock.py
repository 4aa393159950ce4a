"""Clocks shared by the simulated instruments and the controller.

Every piece of code that waits, or stamps a reading with "cell time", asks a
:class:`Clock`. Against real hardware that is :class:`RealClock` (wall time);
in simulation it is :class:`VirtualClock`, whose ``sleep`` returns at once after
moving simulated time forward, so that hours of cycling run in seconds.

Times are in seconds. ``VirtualClock`` starts at 0 s unless told otherwise;
``RealClock`` reports POSIX time.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """What the devices and plans need from a clock.

    Attributes
    ----------
    is_virtual : bool
        True when time is simulated (``sleep`` does not wait in real time).
    """

    is_virtual: bool

    def now(self) -> float:
        """Return the current time in seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` (s, >= 0) of this clock's time pass."""
        ...


def _checked_duration(seconds: float) -> float:
    """Return ``seconds`` as a float, or raise ValueError if negative or not finite."""
    value = float(seconds)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {seconds!r}")
    return value


class VirtualClock:
    """Simulated time that advances only when someone sleeps on it.

    Thread-safe: ophyd status callbacks and the RunEngine may call it from
    different threads, and a lost update would make two devices disagree about
    the time.

    Parameters
    ----------
    start : float, optional
        Initial time in seconds (default 0.0).
    """

    is_virtual: bool = True

    def __init__(self, start: float = 0.0) -> None:
        start = float(start)
        if not math.isfinite(start):
            raise ValueError(f"start time must be finite, got {start!r}")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the simulated time in seconds."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance simulated time by ``seconds`` and return immediately.

        Parameters
        ----------
        seconds : float
            Duration in seconds; must be finite and >= 0.

        Raises
        ------
        ValueError
            If ``seconds`` is negative, NaN or infinite.
        """
        step = _checked_duration(seconds)
        with self._lock:
            self._now += step

    def advance(self, seconds: float) -> None:
        """Advance simulated time by ``seconds`` (s); same as :meth:`sleep`."""
        self.sleep(seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r})"


class RealClock:
    """Wall-clock time, for real hardware: ``now`` is ``time.time()`` (s)."""

    is_virtual: bool = False

    def now(self) -> float:
        """Return POSIX time in seconds."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` (s).

        Raises
        ------
        ValueError
            If ``seconds`` is negative, NaN or infinite (``time.sleep`` would
            otherwise raise a less helpful error or block forever).
        """
        time.sleep(_checked_duration(seconds))

    def __repr__(self) -> str:
        return "RealClock()"
