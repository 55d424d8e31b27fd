"""The pytest side of pause on failure: a script that runs `pytest.main([...])` on the box
pauses at a failing test's assertion (lager/breakpoints/failure.py loads this through
PYTEST_PLUGINS).

pytest catches every test's exception, so nothing is unhandled and the trace function never
pauses inside a test. This hook is where pytest's own --pdb steps in: after the test function
has returned with its failure, before the fixtures' teardown, so instruments a fixture opened
are still claimed and as the failure left them. The banner goes to the script's own stderr
(the monitor's copy of it), which pytest's capture does not reach.
"""
from __future__ import annotations

from typing import Any


def pytest_exception_interact(node: Any, call: Any, report: Any) -> None:
    from .failure import _tb_frames, enabled, pause_for_failure

    excinfo = getattr(call, "excinfo", None)
    if not enabled() or excinfo is None or not isinstance(excinfo.value, Exception):
        return
    pause_for_failure(excinfo.value, _tb_frames(excinfo.tb))
