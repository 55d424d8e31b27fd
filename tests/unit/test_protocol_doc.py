"""docs/protocol.md describes the messages as lager.protocol defines them."""
from __future__ import annotations

from lager.protocol import doc


def test_the_protocol_doc_matches_the_definitions() -> None:
    text = doc.DOC.read_text()
    assert doc.generated_part(text) == doc.render(), \
        "docs/protocol.md is out of date: run `python -m lager.protocol.doc`"


def test_every_message_has_a_section() -> None:
    text = doc.DOC.read_text()
    for _, module in doc.SECTIONS:
        for cls in doc._messages(module):
            assert f"#### {cls.__name__}" in text
