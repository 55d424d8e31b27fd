"""What `lager python` sends: the script (or a directory runnable) plus --add-file extras."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from lager import protocol
from lager.errors import UsageError

from .records import record

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


@record
class Upload:
    display_name: str  # what the user typed; banners show it
    main: str  # entry point inside the run dir
    files: list[tuple[str, Path]]  # (path in the run dir, local path)

    def header_files(self) -> list[dict[str, int | str]]:
        return [{"path": rel, "size": local.stat().st_size, "mode": local.stat().st_mode & 0o755}
                for rel, local in self.files]


def _walk(root: Path) -> list[tuple[str, Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            local = Path(dirpath) / name
            if local.is_file():
                found.append((local.relative_to(root).as_posix(), local))
    return found


def _extra_name(path: str) -> str:
    pure = PurePosixPath(Path(path).as_posix())
    if pure.is_absolute() or ".." in pure.parts:
        return pure.name
    return str(pure)


def _add_extras(files: list[tuple[str, Path]], add_files: tuple[str, ...], main: str) -> None:
    """Each --add-file goes beside the script. Two that share a name, or one that would land
    on the script or on a file of the directory being run, are refused before anything is
    sent: the box would silently keep only one of them."""
    taken = {rel: local for rel, local in files}
    names: dict[str, str] = {}
    for extra in add_files:
        local = Path(extra)
        if not local.is_file():
            raise UsageError(f"--add-file: no such file: {extra}")
        rel = _extra_name(extra)
        name = PurePosixPath(rel).name
        if name in names:
            if Path(names[name]).resolve() == local.resolve():
                continue  # the same file named twice: sent once
            raise UsageError(f"--add-file {names[name]} and --add-file {extra} have the same "
                             f"name {name!r}; only one of them can be uploaded (rename one)")
        if rel in taken:
            what = "the script" if rel == main else f"{rel} of the directory being run"
            raise UsageError(f"--add-file {extra} would replace {what}; rename it")
        names[name] = extra
        taken[rel] = local
        files.append((rel, local))


def build_upload(script: str, add_files: tuple[str, ...]) -> Upload:
    path = Path(script)
    if path.is_dir():
        if not (path / "main.py").is_file():
            raise UsageError(f"{script} is a directory without a main.py to run")
        files = _walk(path)
        main = "main.py"
    elif path.is_file():
        files = [(path.name, path)]
        main = path.name
    else:
        raise UsageError(f"script not found: {script}")
    _add_extras(files, add_files, main)
    if sum(local.stat().st_size for _, local in files) > protocol.MAX_UPLOAD:
        raise UsageError(f"upload is larger than {protocol.MAX_UPLOAD // 2**20} MiB")
    return Upload(display_name=script, main=main, files=files)
