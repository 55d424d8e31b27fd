"""Fleets (issue 18): one command on many boxes, breakpoints across them, results for CI.

A `--box` in node-set syntax (`bench[01-20]`, `@line1`, `@line1&@rack2`, `a,b`) comes here
(ISSUE-NOTES 15); a plain name stays on the single-box path, which knows nothing of fleets. The
fan-out drives each box with the single-box client's own pieces: the run request, the
connection, the `continue` and instrument requests.

Modules: route (is this argv a fleet's? cheap, imported on every start), targets, groups and
inventory (which boxes), fanout and boxrun (one thread per box), output (prefixes, --gather,
--output-dir), pauses and pause_adapter (the aggregated breakpoint line), recap, junit,
commands (--list, --continue, instruments over a set) and cli (the click commands).
"""
