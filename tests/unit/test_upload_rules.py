"""Upload validation, both ends, without a box: the agent's checks of a run request's paths
(`_safe_relpath`, `_parse_files`) and the client's `build_upload`.

Every refusal is one LagerError line. Hostile paths come from a table and from hypothesis
(code we did not write, generating what we would not think of): whatever the path, the agent
either refuses it in one line or accepts a relative path that stays inside the run dir.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from box_agent.subsystems.run import MAX_FILES, _parse_files, _safe_relpath
from client.upload import build_upload
from lager import protocol
from lager.errors import LagerError, UsageError
from lager.protocol.channel import FileEntry


def _one_line(exc: pytest.ExceptionInfo[LagerError]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text and len(text) < 400, text
    return text


HOSTILE_PATHS = [
    ("/etc/passwd", "must be relative"),
    ("//etc/passwd", "must be relative"),
    ("../x.py", "without '..'"),
    ("a/../../x.py", "without '..'"),
    ("a/b/..", "without '..'"),
    ("..", "without '..'"),
    ("a\x00b.py", "NUL byte"),
    ("\x00", "NUL byte"),
    ("\ud800.py", "not valid Unicode"),  # JSON's "\\ud800" decodes to a lone surrogate
    ("", "no name"),
    (".", "names no file"),
    ("./", "names no file"),
    ("x" * 256, "longer than 255 bytes"),
    ("d/" + "é" * 128, "longer than 255 bytes"),  # 256 bytes in UTF-8
]


@pytest.mark.parametrize(("path", "words"), HOSTILE_PATHS)
def test_hostile_paths_are_one_line(path: str, words: str) -> None:
    with pytest.raises(LagerError) as exc:
        _safe_relpath(path)
    assert words in _one_line(exc)


@pytest.mark.parametrize("path", [None, 5, ["a"], {"a": 1}, b"a.py"])
def test_a_path_that_is_no_string(path: object) -> None:
    with pytest.raises(LagerError) as exc:
        _safe_relpath(path)
    assert "no name" in _one_line(exc)


@pytest.mark.parametrize(("path", "kept"), [
    ("t.py", "t.py"), ("./t.py", "t.py"), ("a//b/./c.py", "a/b/c.py"), ("x" * 255, "x" * 255),
    ("a..b/c..py", "a..b/c..py"), ("-rf", "-rf"), (" sp ace", " sp ace"),
])
def test_ordinary_paths_are_normalised(path: str, kept: str) -> None:
    assert _safe_relpath(path) == kept


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab./\x00\\é ") | st.characters(), max_size=40))
def test_any_path_is_refused_in_one_line_or_stays_inside(path: str) -> None:
    try:
        kept = _safe_relpath(path)
    except LagerError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    pure = PurePosixPath(kept)
    assert not pure.is_absolute() and ".." not in pure.parts and pure.parts
    assert "\x00" not in kept
    # joined to a run dir, it names something inside it
    run_dir = PurePosixPath("/run/dir")
    assert os.path.normpath(run_dir / kept).startswith(str(run_dir) + "/")


def _entries(*paths: str, size: int = 1, mode: int = 0o644) -> list[FileEntry]:
    return [FileEntry(path=p, size=size, mode=mode) for p in paths]


@pytest.mark.parametrize(("entries", "words"), [
    (_entries("a.py", "a.py"), "lists 'a.py' twice"),
    (_entries("a.py", "./a.py"), "lists 'a.py' twice"),  # one file after normalising
    (_entries("lib", "lib/x.py"), "both as a file and as the directory of 'lib/x.py'"),
    (_entries("a/b/c.py", "a/b"), "both as a file and as the directory"),
    (_entries("a.py", size=-1), "bad file entry"),
    (_entries("a.py", size=protocol.MAX_UPLOAD + 1), "bad file entry"),
    (_entries("a.py", mode=0o17777), "integer permission"),
    (_entries("a.py", mode=-1), "integer permission"),
    (_entries("../a.py"), "without '..'"),
])
def test_file_lists_the_agent_refuses(entries: list[FileEntry], words: str) -> None:
    with pytest.raises(LagerError) as exc:
        _parse_files(entries)
    assert words in _one_line(exc)


def test_too_many_files() -> None:
    with pytest.raises(LagerError) as exc:
        _parse_files(_entries(*(f"f{i}" for i in range(MAX_FILES + 1))))
    assert f"more than {MAX_FILES} files" in _one_line(exc)


def test_a_file_list_the_agent_takes_keeps_only_permission_bits() -> None:
    files = _parse_files(_entries("main.py", "lib/util.py", "lib/data/x.bin", mode=0o4777))
    assert files == [("main.py", 1, 0o755), ("lib/util.py", 1, 0o755),
                     ("lib/data/x.bin", 1, 0o755)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="ab/.", min_size=1, max_size=6), max_size=6))
def test_generated_file_lists(paths: list[str]) -> None:
    """Any list: refused in one line, or every kept path is distinct and none is another's
    directory (so every file can be stored)."""
    try:
        files = _parse_files(_entries(*paths))
    except LagerError as exc:
        assert "\n" not in str(exc)
        return
    kept = [p for p, _, _ in files]
    assert len(set(kept)) == len(kept)
    for path in kept:
        assert not any(str(parent) in kept for parent in PurePosixPath(path).parents)


# ---------------------------------------------------------------- the client's side

def test_a_script_and_its_extras(tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text("print(1)\n")
    (tmp_path / "cfg").mkdir()
    extra = tmp_path / "cfg" / "bench.json"
    extra.write_text("{}")
    upload = build_upload(str(script), (str(extra), str(extra)))  # twice: sent once
    assert upload.main == "t.py"
    assert [rel for rel, _ in upload.files] == ["t.py", "bench.json"]  # beside the script


def test_a_directory_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "main.py").write_text("")
    (tmp_path / "pkg" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "pkg" / "lib").mkdir()
    (tmp_path / "pkg" / "lib" / "u.py").write_text("")
    upload = build_upload(str(tmp_path / "pkg"), ())
    assert upload.main == "main.py"
    assert sorted(rel for rel, _ in upload.files) == ["lib/u.py", "main.py"]


def _refused(script: Path | str, *extras: str) -> str:
    with pytest.raises(UsageError) as exc:
        build_upload(str(script), extras)
    return _one_line(exc)  # type: ignore[arg-type]


def test_what_the_client_refuses(tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text("")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    (tmp_path / "b" / "x.txt").write_text("2")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "t.py").write_text("")
    (tmp_path / "nomain").mkdir()
    assert "script not found" in _refused(tmp_path / "missing.py")
    assert "without a main.py" in _refused(tmp_path / "nomain")
    assert "no such file" in _refused(script, str(tmp_path / "nope.txt"))
    assert "no such file" in _refused(script, str(tmp_path / "a"))  # a directory is no file
    assert "have the same name 'x.txt'" in _refused(script, str(tmp_path / "a" / "x.txt"),
                                                    str(tmp_path / "b" / "x.txt"))
    assert "would replace the script" in _refused(script, str(tmp_path / "other" / "t.py"))


def test_an_absolute_or_dotted_extra_lands_beside_the_script(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    (tmp_path / "run").mkdir()
    script = tmp_path / "run" / "t.py"
    script.write_text("")
    (tmp_path / "data.csv").write_text("1")
    monkeypatch.chdir(tmp_path / "run")
    for extra in (str(tmp_path / "data.csv"), "../data.csv"):
        upload = build_upload(str(script), (extra,))
        assert [rel for rel, _ in upload.files] == ["t.py", "data.csv"]
        # and the agent takes what the client builds
        _parse_files([FileEntry(**f) for f in upload.header_files()])  # type: ignore[arg-type]
