"""The protocol language: load, validate and describe operando cycling-and-scanning protocols.

This is the public face; the work is split over ``quantities`` (units), ``protocol_errors``,
``protocol_model`` (the frozen dataclasses the executor walks), ``protocol_yaml`` (line-aware
YAML), ``protocol_steps`` and ``protocol_limits`` (the step-string grammar),
``protocol_settings`` (cell, scan, safety), ``protocol_parse``, ``protocol_validate`` and
``protocol_describe``. The language itself is documented in ``docs/protocol-language.md``.

Examples
--------
>>> p = parse_protocol('''
... name: demo
... cell: {preset: si-nmc811-full, capacity: 0.033 mAh}
... steps:
...   - Charge at C/3 until 4.3 V or 30 minutes
... ''')
>>> p.steps[0].setpoint  # A, positive charges the cell
1.1e-05
"""

from __future__ import annotations

from controller.protocol_describe import describe_limit, describe_protocol
from controller.protocol_model import (Action, CycleStep, Limit, Loop, Protocol, ProtocolError,
                                       SafetyEnvelope, ScanSettings, ScanStep, ScheduledBlock,
                                       ScheduleSegment, Step, stability_slope, walk_steps)
from controller.protocol_parse import load_protocol, parse_protocol

__all__ = [
    "Action", "CycleStep", "Limit", "Loop", "Protocol", "ProtocolError", "SafetyEnvelope",
    "ScanSettings", "ScanStep", "ScheduleSegment", "ScheduledBlock", "Step", "describe_limit",
    "describe_protocol", "load_protocol", "parse_protocol", "stability_slope", "walk_steps",
]
