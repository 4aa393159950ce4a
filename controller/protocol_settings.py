"""Protocol-wide settings: typed access to YAML mappings, the cell, scan settings, safety envelope.

Defaults live here and are documented in ``docs/protocol-language.md``; keep the two in step.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from controller.protocol_model import ProtocolError, SafetyEnvelope, ScanSettings
from controller.protocol_yaml import Node
from controller.quantities import (CHARGE, CURRENT, MASS, SPECIFIC_CAPACITY, TIME, VOLTAGE,
                                   SpecError, parse_positive_time, parse_quantity, parse_time)

T = TypeVar("T")

#: Safety voltage window (V) used when a protocol gives none, by cell preset. A pristine,
#: unformed full cell sits far below its 2.5 V working minimum before its first charge (002 scans
#: it at T0), so the full-cell default lower bound is 0 V; discharge limits do the working job.
CELL_PRESETS: dict[str, tuple[float, float]] = {
    "si-li-half": (-0.05, 3.5),
    "si-li-half-deactivating": (-0.05, 3.5),
    "si-nmc811-full": (0.0, 4.4),
    "si-nmc-cylindrical": (2.5, 4.3),
}
DEFAULT_MAX_DURATION_S = 7 * 86400.0
MAX_DEBOUNCE_S = 60.0
NO_CURRENT_MAX_A = 1e-3
SCAN_KEYS = {"projections", "range", "exposure", "darks", "flats", "flats_at_end",
             "interlaced", "preset"}
_NAME = re.compile(r"^[A-Za-z0-9_][\w.+-]*$")


class Fields:
    """Typed, checked access to the keys of one YAML mapping; errors name file, line and step."""

    def __init__(self, node: Node, source: str, what: str, allowed: set[str],
                 step: str | None = None) -> None:
        self.node, self.source, self.what, self.step = node, source, what, step
        if not isinstance(node.value, dict):
            raise self.error(f"{what} must be a mapping (key: value lines)", node.line)
        for key, value in node.value.items():
            if key not in allowed and not key.startswith(("x-", "x_")):
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else \
                    f" (allowed: {', '.join(sorted(allowed))})"
                raise self.error(f"unknown key '{key}' in {what}{extra}", value.line)

    def error(self, reason: str, line: int | None = None) -> ProtocolError:
        return ProtocolError(reason, self.source, self.node.line if line is None else line,
                             self.step)

    def has(self, key: str) -> bool:
        return key in self.node.value

    def get(self, key: str) -> Node | None:
        return self.node.value.get(key)

    def line(self, key: str) -> int:
        found = self.get(key)
        return self.node.line if found is None else found.line

    def convert(self, key: str, fn: Callable[[Any], T], default: T) -> T:
        """Apply ``fn`` to the value of ``key`` (``default`` if absent or null)."""
        found = self.get(key)
        if found is None or found.value is None:
            return default
        try:
            return fn(found.value)
        except SpecError as exc:
            raise self.error(f"{key}: {exc}", found.line) from None

    def text(self, key: str, default: str) -> str:
        return self.convert(key, lambda v: as_text(v, key), default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        return self.convert(key, lambda v: as_int(v, lo, hi), default)


def as_text(value: Any, what: str = "value") -> str:
    """Accept a string (or a plain number, as YAML may read '002' labels) as text."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SpecError(f"expected text for {what}, got {type(value).__name__}")
    return str(value)


def as_int(value: Any, lo: int, hi: int) -> int:
    """Accept an integer in ``[lo, hi]`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"must be between {lo} and {hi}, got {value}")
    return value


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"expected true or false, got {value!r}")
    return value


def as_name(value: Any, what: str = "name") -> str:
    """A name/label: letters, digits, '_', '.', '-', '+'; not starting with punctuation."""
    text = as_text(value, what)
    if not _NAME.match(text) or len(text) > 100:
        raise SpecError(f"{what} '{text}' must be a word of letters, digits, '_', '.', '-'")
    return text


def as_positive(quantity_dims: set[str], capacity_Ah: float | None = None
                ) -> Callable[[Any], float]:
    """Converter: a strictly positive quantity (C-rates need ``capacity_Ah``)."""
    def convert(value: Any) -> float:
        q = parse_quantity(value, quantity_dims, capacity_Ah)
        if math.isnan(q.value):
            raise SpecError(f"C-rate '{q.text}' needs the cell's nominal capacity: set "
                            "'capacity' under 'cell'")
        if q.value <= 0:
            raise SpecError(f"must be positive, got '{value}'")
        return q.value
    return convert


# --- cell --------------------------------------------------------------------------------------

def parse_cell(node: Node | None, source: str) -> tuple[str | None, float | None]:
    """Read ``cell: {preset, capacity | specific_capacity + active_mass}``."""
    if node is None or node.value is None:
        return None, None
    f = Fields(node, source, "cell", {"preset", "capacity", "specific_capacity", "active_mass"})
    preset = f.convert("preset", _cell_preset, None)
    capacity = f.convert("capacity", as_positive({CHARGE}), None)
    specific = f.convert("specific_capacity", as_positive({SPECIFIC_CAPACITY}), None)
    mass = f.convert("active_mass", as_positive({MASS}), None)
    if capacity is not None and (specific is not None or mass is not None):
        raise f.error("give either 'capacity' or 'specific_capacity' with 'active_mass', "
                      "not both", f.line("capacity"))
    if (specific is None) != (mass is None):
        raise f.error("'specific_capacity' and 'active_mass' go together (capacity = their "
                      "product)")
    if specific is not None and mass is not None:
        capacity = specific * mass
    return preset, capacity


def _cell_preset(value: Any) -> str:
    name = as_text(value, "cell preset")
    if name not in CELL_PRESETS:
        raise SpecError(f"unknown cell preset '{name}' (known: {', '.join(CELL_PRESETS)})")
    return name


# --- scan settings -----------------------------------------------------------------------------

def _range_deg(value: Any) -> float:
    if isinstance(value, bool):
        raise SpecError(f"expected an angle such as 180 or '360 deg', got {value!r}")
    text = str(value).strip().lower()
    text = re.sub(r"\s*(°|deg|degs|degree|degrees)$", "", text)
    try:
        degrees = float(text)
    except ValueError:
        raise SpecError(f"expected an angle such as 180 or '360 deg', got {value!r}") from None
    if not 0 < degrees <= 360:
        raise SpecError(f"rotation range must be in (0, 360] degrees, got {value!r}")
    return degrees


def _exposure(value: Any) -> float:
    seconds = parse_positive_time(value, "exposure")
    if seconds > 3600:
        raise SpecError("exposure longer than an hour per projection")
    return seconds


def parse_scan_settings(node: Node | None, base: ScanSettings, source: str,
                        step: str | None = None) -> ScanSettings:
    """Merge a ``scan:`` mapping (any subset of the keys) over ``base`` and validate."""
    if node is None or node.value is None:
        return base
    f = Fields(node, source, "scan settings", SCAN_KEYS, step)
    merged = replace(
        base,
        projections=f.integer("projections", base.projections, 1, 1_000_000),
        range_deg=f.convert("range", _range_deg, base.range_deg),
        exposure_s=f.convert("exposure", _exposure, base.exposure_s),
        darks=f.integer("darks", base.darks, 0, 100_000),
        flats=f.integer("flats", base.flats, 0, 100_000),
        flats_at_end=f.convert("flats_at_end", as_bool, base.flats_at_end),
        interlaced=f.integer("interlaced", base.interlaced, 1, 1000),
        preset=f.convert("preset", lambda v: as_name(v, "scan preset"), base.preset),
    )
    if merged.projections % merged.interlaced:
        raise f.error(f"{merged.projections} projections cannot be split into "
                      f"{merged.interlaced} equal interlaced subsets", f.line("interlaced"))
    return merged


# --- safety ------------------------------------------------------------------------------------

def _window(value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise SpecError("voltage must be a list [min, max], e.g. ['2.5 V', '4.3 V']")
    low, high = (parse_quantity(item.value, {VOLTAGE}).value for item in value)
    if not low < high:
        raise SpecError(f"the voltage window minimum must be below its maximum, got {low:g} V, "
                        f"{high:g} V")
    return low, high


def _debounce(value: Any) -> float:
    seconds = parse_time(value, "debounce")
    if seconds > MAX_DEBOUNCE_S:
        raise SpecError(f"debounce longer than {MAX_DEBOUNCE_S:g} s would let a violation "
                        "last too long")
    return seconds


def parse_safety(node: Node | None, source: str, cell_preset: str | None,
                 capacity_Ah: float | None, poll_s: float, largest_current: float,
                 holds_voltage: bool = False) -> SafetyEnvelope:
    """Read the safety envelope, filling documented defaults from the cell and the steps.

    ``largest_current`` is the largest |setpoint| of the protocol's constant-current steps (A);
    ``holds_voltage`` says whether any step holds a voltage (its current is then unknown).
    """
    empty = Node({}, 1 if node is None else node.line)
    f = Fields(node if node is not None and node.value is not None else empty, source,
               "safety", {"voltage", "max_current", "max_charge", "max_duration", "debounce",
                          "comm_timeout"})
    window = f.convert("voltage", _window, CELL_PRESETS.get(cell_preset or ""))
    if window is None:
        raise f.error("safety.voltage [min, max] is required when the cell has no preset")
    # 2C when the capacity is known, so a slip such as '1 A' for '1 mA' trips here; without a
    # capacity the protocol's own largest current is the only scale there is.
    i_default = 2.0 * capacity_Ah if capacity_Ah else 1.5 * largest_current
    if not i_default and not holds_voltage:
        i_default = NO_CURRENT_MAX_A  # only rests and scans: no current is ever driven
    i_max = f.convert("max_current", as_positive({CURRENT}, capacity_Ah), i_default or None)
    if i_max is None:
        raise f.error("safety.max_current is required: a step holds a voltage and there is no "
                      "capacity or constant-current step to derive it from")
    q_default = 1.5 * capacity_Ah if capacity_Ah else None
    return SafetyEnvelope(
        v_min=window[0], v_max=window[1], i_max=i_max,
        q_max=f.convert("max_charge", as_positive({CHARGE}), q_default),
        t_max=f.convert("max_duration", as_positive({TIME}), DEFAULT_MAX_DURATION_S),
        debounce_s=f.convert("debounce", _debounce, min(2.0 * poll_s, MAX_DEBOUNCE_S)),
        comm_timeout_s=f.convert("comm_timeout", as_positive({TIME}), max(10.0, 5.0 * poll_s)),
    )
