"""Property: any text gives a Protocol or a ProtocolError with a clear message; never a crash."""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from controller.protocol import Protocol, ProtocolError, describe_protocol, parse_protocol

# TOMOCYCLE_FUZZ_EXAMPLES raises the example count for a long local or nightly run.
SETTINGS = settings(max_examples=int(os.environ.get("TOMOCYCLE_FUZZ_EXAMPLES", "300")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PRESETS = [protocols.preset_path(name).read_text(encoding="utf-8")
           for name, _ in protocols.list_presets()]

WORDS = ["Charge", "Discharge", "Hold", "Rest", "at", "until", "for", "or", "C/3", "2C", "C/0",
         "4.3 V", "0 V", "-1 V", "30 minutes", "1e400 s", "0.04 mA", "mAh", "0.5 mAh", "dV/dt",
         "dI/dt", "<", ">", "|I|", "V", "over", "scan", "noise", "scans", "6", "then", "repeat",
         "goto", "next", "stop", "with radiography every", "(1 minute period)", "µA", "nan",
         "inf", "W", "Ohm", "every", "15 minutes", "C/h", "mV/min", "", ":", "{", "[", "-", "#"]
KEYS = ["name", "cell", "preset", "capacity", "steps", "do", "on", "label", "loop", "count",
        "until", "schedule", "scan", "safety", "voltage", "max_current", "projections",
        "interlaced", "radiography", "ocv_rest", "poll_period", "debounce", "x-note", "<<"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(WORDS + ["si-li-half", "si-nmc811-full", "0.033 mAh", "1 s"]))


def check(text: str) -> None:
    try:
        protocol = parse_protocol(text, "fuzz.yaml")
    except ProtocolError as err:
        assert err.reason and str(err).startswith("fuzz.yaml")
        assert "internal parser error" not in err.reason, err.reason
    else:
        assert isinstance(protocol, Protocol)
        assert describe_protocol(protocol)


@SETTINGS
@given(st.text(max_size=300))
def test_random_unicode(text: str) -> None:
    check(text)


yaml_values = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5),
    max_leaves=30)


@SETTINGS
@given(yaml_values)
def test_random_yaml_structures(value: object) -> None:
    check(yaml.safe_dump(value, allow_unicode=True))


step_strings = st.lists(st.sampled_from(WORDS), min_size=1, max_size=9).map(" ".join)
steps = st.lists(step_strings | st.fixed_dictionaries(
    {"do": step_strings},
    optional={"on": st.dictionaries(step_strings, step_strings, max_size=2),
              "label": st.sampled_from(["a", "b", "next", "1x"]),
              "radiography": step_strings}), min_size=1, max_size=4)


@SETTINGS
@given(steps, st.sampled_from(["si-li-half", "si-nmc811-full"]),
       st.sampled_from([None, "0.033 mAh", "2.4 mAh", "1 Ah"]))
def test_grammar_shaped_steps(step_list: list, cell: str, capacity: str | None) -> None:
    doc = {"cell": {"preset": cell, "capacity": capacity}, "steps": step_list}
    check(yaml.safe_dump(doc, allow_unicode=True))


@st.composite
def mutated_presets(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(PRESETS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup-line"]))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(WORDS) | st.text(max_size=5)) + text[pos:]
        elif kind == "replace":
            text = text[:pos] + draw(st.sampled_from(WORDS)) + text[pos + 3:]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:i + 1] + lines[i:])
    return text


@SETTINGS
@given(mutated_presets())
def test_mutated_presets(text: str) -> None:
    check(text)


def test_hostile_documents() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    for text in (laughs, "&a [*a]", "[" * 5000 + "]" * 5000, "{" * 3000, "- " * 3000,
                 "steps: [" + "Rest for 1 s, " * 3000 + "]", "x" * 2_000_000,
                 "steps: !!python/object:os.system [ls]", "steps: !!int abc",
                 "name: 2001-02-30", "a: 1\n---\nb: 2\n", "%YAML 9.9\n---\na: 1",
                 "steps:\n  - " + "9" * 5000, "cell: {capacity: 1e308 mAh}\nsteps: [scan]"):
        check(text)


CURRENTS = ["C/3", "0.5C", "C/10", "10 uA", "0.01 mA", "2C", "1 A"]
VOLTS = ["2.5 V", "3.7 V", "4.2 V", "4300 mV", "5 V", "-1 V"]
LIMITS = VOLTS + ["30 minutes", "1 h", "0 s", "C/10", "|I| < C/20", "V > 4 V", "V < 3 V",
                  "0.01 mAh", "dV/dt < 1 mV/min", "dI/dt < 0.05 C/h over 10 min", "2 scans"]


@st.composite
def plausible_steps(draw: st.DrawFn) -> str:
    verb = draw(st.sampled_from(["Charge at", "Discharge at", "Hold at", "Rest"]))
    value = "" if verb == "Rest" else " " + draw(st.sampled_from(
        VOLTS if verb == "Hold at" else CURRENTS))
    limits = draw(st.lists(st.sampled_from(LIMITS), max_size=3))
    return verb + value + (" until " + " or ".join(limits) if limits else "")


def _floats(node: object) -> list[float]:
    values = []
    for name in getattr(node, "__dataclass_fields__", {}):
        value = getattr(node, name)
        if isinstance(value, float):
            values.append(value)
        elif isinstance(value, tuple):
            for item in value:
                values += _floats(item)
        else:
            values += _floats(value)
    return values


@SETTINGS
@given(st.lists(plausible_steps() | st.just("scan"), min_size=1, max_size=5),
       st.booleans())
def test_plausible_protocols_hold_invariants(step_list: list[str], looped: bool) -> None:
    body: object = [{"loop": {"until": "3 scans", "count": 2, "steps": step_list}}] if looped \
        else step_list
    text = yaml.safe_dump({"cell": {"preset": "si-nmc811-full", "capacity": "1 mAh"},
                           "steps": body})
    try:
        protocol = parse_protocol(text, "fuzz.yaml")
    except ProtocolError as err:
        assert err.line is not None and "internal parser error" not in err.reason
        return
    assert all(value == value and abs(value) < 1e12 for value in _floats(protocol))
    for _, node in protocol.walk():
        if getattr(node, "control", None) == "current":
            assert (node.setpoint > 0) == (node.kind == "charge")
    assert describe_protocol(protocol).count("\n") >= len(step_list)
