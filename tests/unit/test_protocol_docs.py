"""The complete examples in docs/protocol-language.md parse, so the documentation stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.protocol import ProtocolError, describe_protocol, parse_protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol-language.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
COMPLETE = [block for block in BLOCKS if block.startswith("name:")]
ERRORS = re.findall(r"^protocols/x\.yaml:\d+: .*$", DOC.read_text(encoding="utf-8"), flags=re.M)


def test_the_page_has_examples() -> None:
    assert len(COMPLETE) >= 4 and len(ERRORS) >= 5


@pytest.mark.parametrize("block", COMPLETE, ids=[b.split("\n")[0] for b in COMPLETE])
def test_complete_examples_parse(block: str) -> None:
    protocol = parse_protocol(block, "docs/protocol-language.md")
    assert describe_protocol(protocol)


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.startswith("name:")])
def test_snippets_parse_inside_a_protocol(block: str) -> None:
    head = "cell: {preset: si-nmc811-full, capacity: 1 mAh}\n"
    if block.startswith("safety:"):
        text = head + block + "steps: [Rest for 1 s]\n"
    else:
        text = head + "steps:\n" + block
    try:
        parse_protocol(text)
    except ProtocolError as err:  # pragma: no cover - shows which snippet broke
        pytest.fail(f"{err}\n{text}")
