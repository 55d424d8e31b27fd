"""Will this exception be handled? Asked the moment it is raised, before anything unwinds.

A pause on failure must stop at the frame that raised, before any `finally` or `__exit__` runs
(so instruments are still claimed and in their state at the failure), yet only for an exception
nothing will catch. Python decides that only as it unwinds, running the cleanups on the way. So
this reads ahead: for each frame from the raising one outwards, the statements around the
instruction the frame is at (its source, through the code's positions), and what each would do:

- `try` whose body we are in: an `except` that matches catches it, unless its last statement is a
  bare `raise` (log and re-raise); a `finally` runs and lets it go on, unless it returns, breaks
  or continues (then it may swallow it: unknown).
- `with` whose body we are in: `__exit__` lets it go on, unless it can suppress it:
  contextlib.suppress of a matching type, pytest.raises / assertRaises (taken as caught), a
  @contextmanager generator that catches it around its `yield`, or a Python `__exit__` that can
  return something true (unknown).

The answer is UNHANDLED only when every frame lets it through and the outermost frame is the
main script's module: a stack that ends anywhere else was called from C (an atexit callback, a
__del__), and C may swallow what it calls. Anything not read with confidence (no source, an
`except` whose type is a call, `except*`) is UNKNOWN, and the pause waits: the exception is
asked about again in each frame it reaches, and the main module's frame answers for certain.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import itertools
import linecache
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType, FrameType, FunctionType
from typing import Any

UNHANDLED, HANDLED, UNKNOWN, PASSES = "unhandled", "handled", "unknown", "passes"
_MISSING = object()
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
           ast.SetComp, ast.DictComp, ast.GeneratorExp)
_lock = threading.Lock()
_trees: dict[str, ast.Module | None] = {}
_tables: dict[CodeType, list[tuple[int, int]]] = {}
_positions: dict[CodeType, list[tuple[Any, ...]]] = {}
_exits: dict[CodeType, bool] = {}
_around_cache: dict[tuple[CodeType, int], list[Around]] = {}


@dataclass(frozen=True)
class Around:
    """A statement around the instruction: a Try or With node, and which part we are in."""

    node: ast.AST
    part: str  # body, handlers, orelse, finalbody, items


def predict(frame: FrameType, exc: BaseException) -> str:
    """UNHANDLED, HANDLED or UNKNOWN for exc, raised in (or propagating into) frame."""
    current: FrameType | None = frame
    outermost = frame
    while current is not None:
        verdict = _in_frame(current, exc, current is frame)
        if verdict != PASSES:
            return verdict
        outermost, current = current, current.f_back
    is_main = outermost.f_code.co_name == "<module>" and \
        outermost.f_globals.get("__name__") == "__main__"
    return UNHANDLED if is_main else UNKNOWN


def _in_frame(frame: FrameType, exc: BaseException, raising: bool) -> str:
    code, lasti = frame.f_code, frame.f_lasti
    if not raising and isinstance(exc, AttributeError) and \
            _opname(code, lasti) in ("LOAD_ATTR", "LOAD_METHOD"):
        return UNKNOWN  # a property's AttributeError: a __getattr__ may take over, in C
    if not _covered(code, lasti):
        found = _call_swallows(frame, exc) if not raising else PASSES
        return found  # no try or with is active here
    arounds = _arounds(frame)
    if arounds is None:
        return UNKNOWN
    for around in arounds:
        verdict = _around(around, frame, exc)
        if verdict != PASSES:
            return verdict
    return PASSES if raising else _call_swallows(frame, exc)


def _around(around: Around, frame: FrameType, exc: BaseException) -> str:
    node = around.node
    if isinstance(node, ast.Try):
        if around.part == "body":
            for handler in node.handlers:
                verdict = _handler(handler, frame.f_globals, _locals(frame), exc)
                if verdict != PASSES:
                    return verdict
        if around.part != "finalbody" and _may_swallow(node.finalbody):
            return UNKNOWN
        return PASSES
    if hasattr(ast, "TryStar") and isinstance(node, ast.TryStar):
        return UNKNOWN if around.part == "body" else PASSES
    if isinstance(node, (ast.With, ast.AsyncWith)) and around.part == "body":
        for item in reversed(node.items):
            verdict = _with_item(item, frame, exc)
            if verdict != PASSES:
                return verdict
    return PASSES


def _handler(handler: ast.ExceptHandler, globs: dict[str, Any], locs: dict[str, Any],
             exc: BaseException) -> str:
    if handler.type is None:
        caught = True
    else:
        kinds = _evaluate(handler.type, globs, locs)
        if kinds is _MISSING:
            return UNKNOWN
        try:
            caught = isinstance(exc, kinds)  # type: ignore[arg-type]
        except TypeError:
            return UNKNOWN  # not a class: Python would raise TypeError here
    if not caught:
        return PASSES
    last = handler.body[-1] if handler.body else None
    if isinstance(last, ast.Raise) and last.exc is None and not _may_swallow(handler.body):
        return PASSES  # caught, then raised again as it was: it goes on
    return HANDLED


def _with_item(item: ast.withitem, frame: FrameType, exc: BaseException) -> str:
    globs, locs = frame.f_globals, _locals(frame)
    expr = item.context_expr
    target: Any = _MISSING
    if isinstance(expr, ast.Call):
        callee = _evaluate(expr.func, globs, locs)
        if callee is contextlib.suppress:
            kinds = tuple(_evaluate(arg, globs, locs) for arg in expr.args)
            if any(k is _MISSING for k in kinds):
                return UNKNOWN
            try:
                return HANDLED if isinstance(exc, kinds) else PASSES  # type: ignore[arg-type]
            except TypeError:
                return UNKNOWN
        if _expects_raise(callee):
            return HANDLED
        wrapped = getattr(callee, "__wrapped__", None)
        if isinstance(wrapped, FunctionType) and _is_contextmanager(callee):
            return _generator_catches(wrapped, exc)
        if isinstance(callee, type):
            return _exit_of(callee, exc)
    else:
        target = _evaluate(expr, globs, locs)
    if target is _MISSING and isinstance(item.optional_vars, ast.Name):
        target = locs.get(item.optional_vars.id, _MISSING)  # `as psu`: often the manager
    if target is _MISSING:
        return PASSES  # an unknown manager: nearly all let exceptions through
    return _exit_of(type(target), exc, target)


def _exit_of(cls: type, exc: BaseException, obj: Any = _MISSING) -> str:
    if issubclass(cls, contextlib.suppress) and obj is not _MISSING:
        kinds = getattr(obj, "_exceptions", ())
        return HANDLED if isinstance(exc, kinds) else PASSES
    exit_fn = getattr(cls, "__exit__", None)
    code = getattr(exit_fn, "__code__", None)
    if code is None:
        return PASSES  # written in C (files, locks): they never suppress
    return UNKNOWN if _can_return_true(code) else PASSES


def _expects_raise(callee: Any) -> bool:
    """pytest.raises, unittest's assertRaises(Regex): they catch what they expect."""
    func = getattr(callee, "__func__", callee)
    name = getattr(func, "__qualname__", "") or ""
    module = getattr(func, "__module__", "") or ""
    return (module.startswith(("_pytest", "pytest")) and name.endswith("raises")) or \
        name.startswith("TestCase.assertRaises")


_CM_CODE = contextlib.contextmanager(lambda: iter(())).__code__  # type: ignore[arg-type]


def _is_contextmanager(callee: Any) -> bool:
    return getattr(callee, "__code__", None) is _CM_CODE


def _generator_catches(gen: FunctionType, exc: BaseException) -> str:
    """A @contextmanager generator: does a try around its yield catch exc?"""
    tree = _tree(gen.__code__.co_filename, gen.__globals__)
    scope = _scope_node(tree, gen.__code__) if tree is not None else None
    if scope is None:
        return UNKNOWN
    for path in _yield_paths(scope):
        for around in path:
            if isinstance(around.node, ast.Try) and around.part == "body":
                for handler in around.node.handlers:
                    verdict = _handler(handler, gen.__globals__, {}, exc)
                    if verdict != PASSES:
                        return verdict
    return PASSES


def _yield_paths(scope: ast.AST) -> Iterator[list[Around]]:
    def walk(node: ast.AST, path: list[Around]) -> Iterator[list[Around]]:
        for field, value in ast.iter_fields(node):
            for child in value if isinstance(value, list) else [value]:
                if not isinstance(child, ast.AST) or isinstance(child, _SCOPES):
                    continue
                here = path
                if isinstance(node, (ast.Try, ast.With, ast.AsyncWith)):
                    here = [Around(node, field), *path]
                if isinstance(child, (ast.Yield, ast.YieldFrom)):
                    yield here
                yield from walk(child, here)

    yield from walk(scope, [])


# -- reading a frame -----------------------------------------------------------------------


def _locals(frame: FrameType) -> dict[str, Any]:
    try:
        return dict(frame.f_locals)
    except Exception:  # noqa: BLE001 - a frame whose locals cannot be read: none
        return {}


def _evaluate(expr: ast.expr, globs: dict[str, Any], locs: dict[str, Any]) -> Any:
    """Names, attributes and tuples of them, as the frame would see them; nothing is called
    (an attribute may be a property, which the `except` clause itself would run too)."""
    if isinstance(expr, ast.Name):
        for space in (locs, globs, vars(builtins)):
            if expr.id in space:
                return space[expr.id]
        return _MISSING
    if isinstance(expr, ast.Attribute):
        base = _evaluate(expr.value, globs, locs)
        if base is _MISSING:
            return _MISSING
        try:
            return getattr(base, expr.attr)
        except Exception:  # noqa: BLE001 - whatever the lookup raised, we cannot tell
            return _MISSING
    if isinstance(expr, ast.Tuple):
        items = tuple(_evaluate(e, globs, locs) for e in expr.elts)
        return _MISSING if any(i is _MISSING for i in items) else items
    return _MISSING


def _call_swallows(frame: FrameType, exc: BaseException) -> str:
    """The frame is in a call of a C function that swallows what it calls: hasattr, and
    getattr with a default, catch AttributeError."""
    if not isinstance(exc, AttributeError):
        return PASSES
    node = _innermost(frame)
    if isinstance(node, ast.Call):
        callee = _evaluate(node.func, frame.f_globals, _locals(frame))
        if callee is hasattr or (callee is getattr and len(node.args) == 3):
            return HANDLED
    return PASSES


def _may_swallow(body: list[ast.stmt]) -> bool:
    """A return, break or continue that can end the block early (ends the unwinding)."""
    for stmt in body:
        for node in _walk_scope(stmt):
            if isinstance(node, (ast.Return, ast.Break, ast.Continue)):
                return True
    return False


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _SCOPES):
            yield from _walk_scope(child)


def _can_return_true(code: CodeType) -> bool:
    with _lock:
        known = _exits.get(code)
    if known is None:
        known = False
        last: dis.Instruction | None = None
        for ins in dis.get_instructions(code):
            constant_false = (ins.opname == "RETURN_CONST" and not ins.argval) or (
                last is not None and last.opname == "LOAD_CONST" and not last.argval)
            if ins.opname in ("RETURN_VALUE", "RETURN_CONST") and not constant_false:
                known = True
                break
            last = ins
        with _lock:
            _exits[code] = known
    return known


# -- the code's exception table and positions ----------------------------------------------


def _covered(code: CodeType, lasti: int) -> bool:
    """Whether any handler (try, with, or the compiler's own cleanups) covers the instruction."""
    with _lock:
        table = _tables.get(code)
    if table is None:
        table = _parse_table(code.co_exceptiontable) if hasattr(code, "co_exceptiontable") \
            else [(0, 1 << 30)]
        with _lock:
            _tables[code] = table
    return any(start <= lasti < end for start, end in table)


def _parse_table(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each entry (the format of CPython 3.11's exception table)."""
    entries = []
    data = iter(raw)

    def varint() -> int:
        byte = next(data)
        value = byte & 63
        while byte & 64:
            byte = next(data)
            value = (value << 6) | (byte & 63)
        return value

    try:
        while True:
            start = varint() * 2
            length = varint() * 2
            varint()  # target
            varint()  # depth and lasti
            entries.append((start, start + length))
    except StopIteration:
        return entries


def _opname(code: CodeType, lasti: int) -> str:
    try:
        return dis.opname[code.co_code[lasti]]
    except IndexError:
        return ""


def _position(frame: FrameType) -> tuple[int, int | None, int | None, int | None]:
    code = frame.f_code
    with _lock:
        positions = _positions.get(code)
    if positions is None:
        positions = list(code.co_positions())
        with _lock:
            _positions[code] = positions
    index = frame.f_lasti // 2
    if 0 <= index < len(positions) and positions[index][0] is not None:
        line, end_line, col, end_col = positions[index]
        return line, end_line, col, end_col
    return frame.f_lineno, None, None, None


# -- the source around a position ----------------------------------------------------------


def _tree(filename: str, globs: dict[str, Any]) -> ast.Module | None:
    with _lock:
        if filename in _trees:
            return _trees[filename]
    lines = linecache.getlines(filename, globs)
    tree: ast.Module | None = None
    if lines:
        try:
            tree = ast.parse("".join(lines), filename)
        except (SyntaxError, ValueError):
            tree = None
    with _lock:
        _trees[filename] = tree
    return tree


def _contains(node: ast.AST, pos: tuple[int, int | None, int | None, int | None]) -> bool:
    start = getattr(node, "lineno", None)
    end = getattr(node, "end_lineno", None)
    if start is None or end is None:
        return False
    line, end_line, col, end_col = pos
    if col is None or end_line is None or end_col is None:
        return start <= line <= end
    node_col, node_end_col = getattr(node, "col_offset", 0), getattr(node, "end_col_offset", 0)
    return (start, node_col) <= (line, col) and (end_line, end_col) <= (end, node_end_col)


def _path(tree: ast.AST, pos: tuple[int, int | None, int | None, int | None]
          ) -> list[tuple[ast.AST, str]]:
    """Root to innermost: each node that holds pos, with the field of its parent it is in."""
    path: list[tuple[ast.AST, str]] = [(tree, "")]
    node = tree
    while True:
        found = None
        for field, value in ast.iter_fields(node):
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST) and _contains(child, pos):
                    found = (child, field)
                    break
            if found:
                break
        if found is None:
            return path
        path.append(found)
        node = found[0]


def _arounds(frame: FrameType) -> list[Around] | None:
    """The try and with statements around the frame's instruction, innermost first, within the
    frame's own scope; None when the source cannot be read."""
    tree = _tree(frame.f_code.co_filename, frame.f_globals)
    if tree is None:
        return None
    code = frame.f_code
    key = (code, frame.f_lasti)
    with _lock:
        if key in _around_cache:
            return _around_cache[key]
    path = _path(tree, _position(frame))
    arounds: list[Around] = []
    for (node, _), (_, field) in itertools.pairwise(path):
        if isinstance(node, _SCOPES) and _is_scope_of(node, code) and \
                field not in ("decorator_list", "args", "bases", "keywords", "returns"):
            arounds = []  # the frame's own statements start here
        elif isinstance(node, (ast.Try, ast.With, ast.AsyncWith)) or \
                (hasattr(ast, "TryStar") and isinstance(node, ast.TryStar)):
            arounds.append(Around(node, field))
    found = list(reversed(arounds))
    with _lock:
        if len(_around_cache) > 4096:
            _around_cache.clear()
        _around_cache[key] = found
    return found


_COMPREHENSIONS = {ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>",
                   ast.DictComp: "<dictcomp>", ast.GeneratorExp: "<genexpr>",
                   ast.Lambda: "<lambda>"}


def _is_scope_of(node: ast.AST, code: CodeType) -> bool:
    """Whether node's body runs as code (a comprehension's first iterable, a function's
    defaults and decorators run in the frame around it)."""
    name = _COMPREHENSIONS.get(type(node)) or getattr(node, "name", None)
    return name == code.co_name


def _innermost(frame: FrameType) -> ast.AST | None:
    tree = _tree(frame.f_code.co_filename, frame.f_globals)
    return _path(tree, _position(frame))[-1][0] if tree is not None else None


def _scope_node(tree: ast.AST, code: CodeType) -> ast.AST | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.name == code.co_name and \
                code.co_firstlineno in (node.lineno, *(d.lineno for d in node.decorator_list)):
            return node
    return None
