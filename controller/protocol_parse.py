"""Parse a protocol file (YAML) into a validated :class:`~controller.protocol_model.Protocol`.

Any text yields either a ``Protocol`` or a :class:`ProtocolError` naming file, line, step and
reason; no other exception escapes :func:`parse_protocol`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from controller.protocol_limits import apply_actions, parse_limit
from controller.protocol_model import (CycleStep, Limit, Loop, Protocol, ProtocolError,
                                       ScanSettings, ScanStep, ScheduledBlock, Step, walk_steps)
from controller.protocol_settings import (Fields, as_name, as_text, parse_cell, parse_safety,
                                          parse_scan_settings)
from controller.protocol_steps import (is_scan_string, parse_cycle_string, parse_schedule,
                                       parse_scan_string)
from controller.protocol_validate import validate
from controller.protocol_yaml import Node, load_nodes
from controller.quantities import SpecError, parse_positive_time, parse_time

TOP_KEYS = {"name", "title", "description", "reference", "cell", "poll_period", "ocv_before_scan",
            "scan", "safety", "on_scan_failure", "scan_retries", "steps"}
STEP_KEYS = {"do", "label", "on", "radiography", "ocv_rest", "scan", "on_failure"}
LOOP_KEYS = {"count", "until", "on", "label", "steps", "ocv_rest", "scan"}
SCHEDULE_KEYS = {"schedule", "steps", "until", "on", "label", "ocv_rest", "scan"}
RESERVED_LABELS = {"next", "stop", "repeat", "scan", "then", "goto"}
MAX_POLL_S = 3600.0


@dataclass(frozen=True)
class _Ctx:
    """What the steps of one body inherit: file, capacity and (possibly overridden) defaults."""

    source: str
    capacity_Ah: float | None
    poll_period_s: float
    ocv_rest_s: float
    scan: ScanSettings
    on_scan_failure: str


def _spec_error(ctx: _Ctx, exc: SpecError, line: int, step: str | None) -> ProtocolError:
    return ProtocolError(str(exc), ctx.source, line, step)


# --- steps -------------------------------------------------------------------------------------

def _parse_steps(node: Node | None, ctx: _Ctx, what: str, line: int) -> tuple[Step, ...]:
    if node is None or node.value is None:
        raise ProtocolError(f"{what} needs a non-empty 'steps' list", ctx.source, line)
    if not isinstance(node.value, list) or not node.value:
        raise ProtocolError(f"'steps' of {what} must be a non-empty list", ctx.source, node.line)
    return tuple(_parse_step(item, ctx) for item in node.value)


def _parse_step(node: Node, ctx: _Ctx) -> Step:
    if isinstance(node.value, str):
        return _string_step(node.value, node.line, ctx, {})
    if isinstance(node.value, dict):
        if "loop" in node.value:
            return _parse_loop(node, ctx)
        if "schedule" in node.value:
            return _parse_schedule(node, ctx)
        if "do" in node.value:
            return _mapped_step(node, ctx)
        raise ProtocolError("a step mapping needs 'do', 'loop' or 'schedule'", ctx.source,
                            node.line)
    raise ProtocolError(f"a step must be a string such as 'Rest for 1 minute' or a mapping, got "
                        f"{node.value!r}"[:200], ctx.source, node.line)


def _label(f: Fields, key: str = "label") -> str | None:
    label = f.convert(key, lambda v: as_name(v, "label"), None)
    if label is not None and label.lower() in RESERVED_LABELS:
        raise f.error(f"'{label}' is a reserved word and cannot be a label", f.line(key))
    return label


def _local_ctx(f: Fields, ctx: _Ctx, step: str | None) -> _Ctx:
    ocv = f.convert("ocv_rest", lambda v: parse_time(v, "ocv_rest"), ctx.ocv_rest_s)
    scan = parse_scan_settings(f.get("scan"), ctx.scan, ctx.source, step)
    return replace(ctx, ocv_rest_s=ocv, scan=scan)


def _mapped_step(node: Node, ctx: _Ctx) -> Step:
    text = node.value["do"].value
    step = text if isinstance(text, str) else None
    f = Fields(node, ctx.source, "a step", STEP_KEYS, step)
    text = f.text("do", "")
    return _string_step(text, f.line("do"), _local_ctx(f, ctx, text), f.node.value, f)


def _string_step(text: str, line: int, ctx: _Ctx, extra: dict[str, Node],
                 f: Fields | None = None) -> Step:
    if is_scan_string(text):
        return _scan_step(text, line, ctx, extra, f)
    if "on_failure" in extra:
        raise ProtocolError("'on_failure' applies to scan steps only", ctx.source,
                            extra["on_failure"].line, text)
    return _cycle_step(text, line, ctx, extra, f)


def _scan_step(text: str, line: int, ctx: _Ctx, extra: dict[str, Node],
               f: Fields | None) -> ScanStep:
    for key in ("on", "radiography"):
        if key in extra:
            raise ProtocolError(f"'{key}' applies to cycling steps, not to scans", ctx.source,
                                extra[key].line, text)
    try:
        count, noise, suffix = parse_scan_string(text)
    except SpecError as exc:
        raise _spec_error(ctx, exc, line, text) from None
    label = _label(f) if f is not None else None
    if suffix is not None and label is not None and suffix != label:
        raise ProtocolError(f"two labels: '{suffix}' in the text and '{label}' in 'label'",
                            ctx.source, line, text)
    on_failure = ctx.on_scan_failure if f is None else f.convert(
        "on_failure", _failure_policy, ctx.on_scan_failure)
    return ScanStep(count, noise, ctx.ocv_rest_s, ctx.scan, on_failure,  # type: ignore[arg-type]
                    label or _suffix_label(suffix, ctx, line, text), line, text)


def _suffix_label(suffix: str | None, ctx: _Ctx, line: int, text: str) -> str | None:
    if suffix is not None and suffix.lower() in RESERVED_LABELS:
        raise ProtocolError(f"'{suffix}' is a reserved word and cannot be a label", ctx.source,
                            line, text)
    return suffix


def _failure_policy(value: Any) -> str:
    text = as_text(value, "on_failure").lower()
    if text not in ("continue", "stop"):
        raise SpecError(f"expected 'continue' or 'stop', got '{value}'")
    return text


def _cycle_step(text: str, line: int, ctx: _Ctx, extra: dict[str, Node],
                f: Fields | None) -> CycleStep:
    try:
        parts = parse_cycle_string(text, ctx.capacity_Ah)
    except SpecError as exc:
        raise _spec_error(ctx, exc, line, text) from None
    if parts.poll_period_s is not None and parts.poll_period_s > MAX_POLL_S:
        raise ProtocolError("poll period longer than an hour", ctx.source, line, text)
    limits = _actions(parts.limits, extra.get("on"), parts.kind, ctx, text)
    radiography = parts.radiography_period_s
    if f is not None and f.has("radiography"):
        if radiography is not None:
            raise f.error("radiography given twice (in the text and as a key)",
                          f.line("radiography"))
        radiography = f.convert("radiography", _radiography_period, None)
    return CycleStep(parts.kind, parts.control, parts.setpoint,  # type: ignore[arg-type]
                     limits, parts.poll_period_s or ctx.poll_period_s, ctx.ocv_rest_s, ctx.scan,
                     parts.c_rate, _label(f) if f is not None else None, radiography, line, text)


def _radiography_period(value: Any) -> float:
    text = re.sub(r"^every\s+", "", as_text(value, "radiography").strip(), flags=re.IGNORECASE)
    return parse_positive_time(text, "radiography period")


def _actions(limits: tuple[Limit, ...], on: Node | None, owner: str, ctx: _Ctx,
             step: str) -> tuple[Limit, ...]:
    if on is None or on.value is None:
        return limits
    if not isinstance(on.value, dict):
        raise ProtocolError("'on' must map limits to actions, e.g. {\"30 minutes\": scan then "
                            "repeat}", ctx.source, on.line, step)
    try:
        return apply_actions(limits, {k: v.value for k, v in on.value.items()}, owner,
                             ctx.capacity_Ah)
    except SpecError as exc:
        key_node = on.value.get(getattr(exc, "key", ""), on)
        raise _spec_error(ctx, exc, key_node.line, step) from None


# --- blocks ------------------------------------------------------------------------------------

def _until(f: Fields, owner: str, ctx: _Ctx, step: str) -> tuple[Limit, ...]:
    node = f.get("until")
    if f.has("on") and (node is None or node.value is None):
        raise f.error(f"'on' names limits of 'until', but this {owner} has no 'until'",
                      f.line("on"))
    if node is None or node.value is None:
        return ()
    if not isinstance(node.value, str):
        raise f.error("'until' must be text such as '6 scans or |I| < C/50'", node.line)
    try:
        limits = tuple(parse_limit(piece, owner, ctx.capacity_Ah)
                       for piece in re.split(r"\s+or\s+", node.value.strip(), flags=re.I))
    except SpecError as exc:
        raise _spec_error(ctx, exc, node.line, step) from None
    return _actions(limits, f.get("on"), owner, ctx, step)


def _parse_loop(node: Node, ctx: _Ctx) -> Loop:
    outer = Fields(node, ctx.source, "a loop step", {"loop"}, "loop")
    body = outer.get("loop")
    assert body is not None
    f = Fields(body, ctx.source, "loop", LOOP_KEYS, "loop")
    label = _label(f)
    step = f"loop {label}" if label else "loop"
    f.step = step
    count = f.integer("count", 0, 1, 1_000_000) or None
    local = _local_ctx(f, ctx, step)
    until = _until(f, "loop", local, step)
    steps = _parse_steps(f.get("steps"), local, f"loop '{label or ''}'".replace(" ''", ""),
                         body.line)
    return Loop(steps, count, until, local.ocv_rest_s, local.scan, label, body.line, step)


def _parse_schedule(node: Node, ctx: _Ctx) -> ScheduledBlock:
    raw = node.value["schedule"].value
    step = raw if isinstance(raw, str) else "schedule"
    f = Fields(node, ctx.source, "a schedule block", SCHEDULE_KEYS, step)
    text = f.text("schedule", "")
    try:
        segments = parse_schedule(text)
    except SpecError as exc:
        raise _spec_error(ctx, exc, f.line("schedule"), step) from None
    local = _local_ctx(f, ctx, step)
    until = _until(f, "schedule", local, step)
    steps = _parse_steps(f.get("steps"), local, "schedule", node.line)
    return ScheduledBlock(steps, segments, until, local.ocv_rest_s, local.scan, _label(f),
                          f.line("schedule"), text)


# --- the document ------------------------------------------------------------------------------

def _failure(f: Fields) -> str:
    return f.convert("on_scan_failure", _failure_policy, "continue")


def _settings(f: Fields, source: str) -> _Ctx:
    _, capacity = parse_cell(f.get("cell"), source)
    poll = f.convert("poll_period", lambda v: parse_positive_time(v, "poll_period"), 1.0)
    if poll > MAX_POLL_S:
        raise f.error("poll_period longer than an hour", f.line("poll_period"))
    ocv = f.convert("ocv_before_scan", lambda v: parse_time(v, "ocv_before_scan"), 60.0)
    scan = parse_scan_settings(f.get("scan"), ScanSettings(), source)
    return _Ctx(source, capacity, poll, ocv, scan, _failure(f))


def _largest_current(steps: tuple[Step, ...]) -> float:
    currents = [abs(node.setpoint) for _, node in walk_steps(steps)
                if isinstance(node, CycleStep) and node.control == "current"]
    return max(currents, default=0.0)


def _default_name(source: str) -> str:
    stem = Path(source).stem if source and not source.startswith("<") else ""
    return stem or "unnamed"


def _parse_document(text: str, source: str) -> Protocol:
    root = load_nodes(text, source)
    f = Fields(root, source, "the protocol", TOP_KEYS)
    ctx = _settings(f, source)
    preset, _ = parse_cell(f.get("cell"), source)
    steps = _parse_steps(f.get("steps"), ctx, "the protocol", root.line)
    holds = any(isinstance(n, CycleStep) and n.control == "voltage" for _, n in walk_steps(steps))
    safety = parse_safety(f.get("safety"), source, preset, ctx.capacity_Ah, ctx.poll_period_s,
                          _largest_current(steps), holds)
    name = f.convert("name", lambda v: as_name(v, "protocol name"), _default_name(source))
    protocol = Protocol(
        name=name, title=f.text("title", name), description=f.text("description", "").strip(),
        reference=f.text("reference", "").strip(), source=source, cell_preset=preset,
        capacity_Ah=ctx.capacity_Ah,
        poll_period_s=ctx.poll_period_s, ocv_before_scan_s=ctx.ocv_rest_s, scan=ctx.scan,
        safety=safety, steps=steps, on_scan_failure=ctx.on_scan_failure,  # type: ignore[arg-type]
        scan_retries=f.integer("scan_retries", 1, 0, 10))
    validate(protocol, source)
    return protocol


def parse_protocol(text: str, source: str = "<string>") -> Protocol:
    """Parse and validate protocol YAML ``text``.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        File name used in error messages and recorded in ``Protocol.source`` (unless the file
        sets ``source:`` itself).

    Returns
    -------
    Protocol

    Raises
    ------
    ProtocolError
        For anything wrong, with ``file``, ``line``, ``step`` and ``reason``; never another type.
    """
    try:
        return _parse_document(text, source)
    except ProtocolError:
        raise
    except (RecursionError, MemoryError):
        raise ProtocolError("protocol too deeply nested or too large", source) from None
    except Exception as exc:  # the contract: garbage in, ProtocolError out
        raise ProtocolError(f"internal parser error (please report): {type(exc).__name__}: "
                            f"{exc}", source) from exc


def load_protocol(path: str | Path) -> Protocol:
    """Read and parse the protocol file at ``path`` (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read the protocol file: {exc}", str(path)) from None
    return parse_protocol(text, str(path))


__all__ = ["ProtocolError", "load_protocol", "parse_protocol"]
