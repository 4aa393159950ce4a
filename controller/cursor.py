"""Where an experiment is in its protocol: the current leaf step and the counters around it.

A :class:`Cursor` holds the path of the running leaf (a cycling step or a scan step, see
``controller.protocol_model``) and one frame per enclosing loop or schedule block (iteration,
scans, entry time and charge, schedule progress), plus the running step's own frame (start
time and charge, time spent interrupted, stability samples, radiography). It is plain data:
:meth:`Cursor.to_dict` / :meth:`Cursor.from_dict` round-trip it through a checkpoint.

Navigation follows the contract in docs/protocol-language.md ("How a protocol runs"): ``next``
moves to the following sibling, ends loop iterations and leaves finished loops and blocks;
``goto`` leaves every container that does not enclose the target and (re)enters the ones that
do; entering a loop or block starts its counters afresh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from controller.protocol_model import CycleStep, Loop, Protocol, ScanStep, ScheduledBlock, Step

Path = tuple[int, ...]


@dataclass
class ContainerFrame:
    """Counters of one active loop or schedule block (times in cell seconds, charge in Ah)."""

    entered_s: float
    entered_q: float
    iteration: int = 0
    scans: int = 0
    #: schedule blocks: the last scheduled time (s from entry) already served or skipped
    served_s: float = 0.0


@dataclass
class StepFrame:
    """The running cycling step."""

    started_s: float
    started_q: float
    #: cell time spent interrupted by scheduled scans (does not count towards time limits)
    interrupted_s: float = 0.0
    #: samples for stability limits: (t, V, I) since ``samples_since``
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    samples_since: float = 0.0
    next_radiograph_s: float | None = None

    def elapsed(self, now: float) -> float:
        """Time in the step, interruptions excluded (s)."""
        return now - self.started_s - self.interrupted_s


@dataclass
class Cursor:
    """Position in a protocol plus the frames of everything around it."""

    path: Path = ()
    frames: dict[Path, ContainerFrame] = field(default_factory=dict)
    step: StepFrame | None = None
    finished: bool = False

    # ------------------------------------------------------------- navigation
    def enter(self, protocol: Protocol, path: Path, now: float, charge: float) -> None:
        """Make ``path`` current: open frames for containers on the way, descend to a leaf.

        A container that is the target itself starts afresh (its frame is replaced).
        """
        for depth in range(1, len(path) + 1):
            prefix = path[:depth]
            node = protocol.at(prefix)
            if isinstance(node, (Loop, ScheduledBlock)) and (prefix not in self.frames or depth == len(path)):
                self.frames[prefix] = ContainerFrame(entered_s=now, entered_q=charge)
        node = protocol.at(path)
        while isinstance(node, (Loop, ScheduledBlock)):
            path = (*path, 0)
            node = protocol.at(path)
            if isinstance(node, (Loop, ScheduledBlock)):
                self.frames[path] = ContainerFrame(entered_s=now, entered_q=charge)
        self.path = path
        self.step = StepFrame(started_s=now, started_q=charge, samples_since=now) \
            if isinstance(node, CycleStep) else None

    def advance(self, protocol: Protocol, now: float, charge: float) -> None:
        """Move past the current leaf (the ``next`` action): sibling, next iteration, or out."""
        path = self.path
        while path:
            parent, index = path[:-1], path[-1]
            siblings = _children(protocol, parent)
            if index + 1 < len(siblings):
                self.enter(protocol, (*parent, index + 1), now, charge)
                return
            if not parent:
                break
            node = protocol.at(parent)
            frame = self.frames[parent]
            if isinstance(node, Loop):
                frame.iteration += 1
                if node.count is None or frame.iteration < node.count:
                    self.enter_body(protocol, parent, now, charge)
                    return
            self.leave(parent)
            path = parent
        self.finished, self.path, self.step = True, (), None

    def enter_body(self, protocol: Protocol, container: Path, now: float, charge: float) -> None:
        """Start the body of an already-entered container again (a new loop iteration)."""
        frame = self.frames[container]
        for key in [k for k in self.frames if len(k) > len(container) and k[:len(container)] == container]:
            del self.frames[key]
        self.frames[container] = frame
        self.enter(protocol, (*container, 0), now, charge)

    def leave(self, container: Path) -> None:
        """Drop the frames of ``container`` and everything inside it."""
        for key in [k for k in self.frames if k[:len(container)] == container]:
            del self.frames[key]

    def exit_to(self, protocol: Protocol, container: Path, now: float, charge: float) -> None:
        """Leave ``container`` and continue after it (a loop/block limit's ``next``)."""
        self.leave(container)
        self.path = container
        self.advance(protocol, now, charge)

    def goto(self, protocol: Protocol, label: str, now: float, charge: float) -> None:
        """Continue at the node labelled ``label``, leaving containers that do not enclose it."""
        target = protocol.find(label)
        for key in [k for k in self.frames if target[:len(k)] != k or k == target]:
            del self.frames[key]
        self.enter(protocol, target, now, charge)

    def restart_step(self, now: float, charge: float) -> None:
        """Run the current cycling step again from scratch (``scan then repeat``)."""
        self.step = StepFrame(started_s=now, started_q=charge, samples_since=now)

    def containers(self) -> list[Path]:
        """Paths of the enclosing loops and blocks, outermost first."""
        return sorted((k for k in self.frames if self.path[:len(k)] == k), key=len)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (paths as lists, frame keys as dotted strings)."""
        return {"path": list(self.path), "finished": self.finished,
                "frames": {_key(p): asdict(f) for p, f in self.frames.items()},
                "step": None if self.step is None else asdict(self.step)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cursor:
        """Inverse of :meth:`to_dict`."""
        step = data.get("step")
        if step is not None:
            step = StepFrame(**{**step, "samples": [tuple(s) for s in step.get("samples", [])]})
        return cls(path=tuple(data["path"]), finished=bool(data["finished"]),
                   frames={_path(k): ContainerFrame(**v) for k, v in data["frames"].items()}, step=step)


def _children(protocol: Protocol, parent: Path) -> tuple[Step, ...]:
    if not parent:
        return protocol.steps
    node = protocol.at(parent)
    assert isinstance(node, (Loop, ScheduledBlock))
    return node.steps


def _key(path: Path) -> str:
    return ".".join(str(i) for i in path)


def _path(key: str) -> Path:
    return tuple(int(i) for i in key.split(".")) if key else ()


def step_number(path: Path) -> str:
    """The step's number as ``tomocycle check`` prints it: ``(1, 0)`` is ``"2.1"``."""
    return ".".join(str(i + 1) for i in path)


def leaf_kind(protocol: Protocol, path: Path) -> str:
    """"cycle" or "scan" for the leaf at ``path``."""
    node = protocol.at(path)
    if isinstance(node, CycleStep):
        return "cycle"
    if isinstance(node, ScanStep):
        return "scan"
    raise TypeError(f"path {path} is a {type(node).__name__}, not a leaf step")
