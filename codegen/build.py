"""Generated source -> an imported module whose functions Numba compiles with cache=True.

The text is written once to `<cache dir>/k_<hash>.py`, the hash covering the text and the
symdiff, Numba and NumPy versions, then imported from that path. A real file lets Numba cache
machine code beside it, so a second process loads the kernel instead of compiling it. Files are
written to a temporary name and renamed into place (two processes may race; both succeed), an
existing file is never rewritten (Numba's index keys on its mtime), and a file whose contents do
not match its name is treated as corrupt and replaced. A process importing a module holds a lock
on it, so a second process (a test worker, a Dask worker) waits and then loads the first one's
machine code instead of compiling the same kernel beside it. A few generated modules are plain
Python and NumPy (a model's front step, the optimizers' NumPy updates): they are imported the
same way, without loading Numba.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.metadata
import importlib.util
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path

try:
    import fcntl  # not on Windows, where processes compile side by side
except ImportError:
    fcntl = None

CODEGEN_VERSION = "2"
ENV_VAR = "SYMDIFF_CACHE_DIR"
# versions read without importing Numba: a wait=False model answers before Numba has loaded
_NUMBA, _NUMPY = (importlib.metadata.version(p) for p in ("numba", "numpy"))
_LOCKS: dict[str, threading.Lock] = {}  # one per module: a background load and a call wait
_LOCKS_LOCK = threading.Lock()  # for each other instead of importing (compiling) it twice
_pauses = 0  # compiles under way with the cyclic garbage collector paused (see `compiling`)
_resume = False  # whether the collector was on when the first of them began
_PAUSE_LOCK = threading.Lock()


def cache_dir() -> Path:
    """The per-user kernel cache: $SYMDIFF_CACHE_DIR, else ~/.cache/symdiff (mode 0700)."""
    path = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "symdiff")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(f"the symdiff cache {path} belongs to another user; set {ENV_VAR}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"the symdiff cache {path} can be written by others "
                              f"(mode {oct(info.st_mode & 0o777)}); chmod 700 it or set {ENV_VAR}")
    return path


def source_key(source: str) -> str:
    stamp = f"symdiff-codegen {CODEGEN_VERSION} numba {_NUMBA} numpy {_NUMPY}\n"
    return hashlib.sha256((stamp + source).encode()).hexdigest()[:40]


def module_name(source: str) -> str:
    """The name `source` is imported under (another module may import it by that name)."""
    return f"_symdiff_k_{source_key(source)}"


def load_module(source: str, numba: bool = True):
    """Write `source` under its hash (unless a valid copy exists) and import it.

    Returns (module, reused): reused is True when a valid file was already there. Importing
    it runs Numba's compile of the functions given signatures, or its load from the cache.
    With numba=False (plain Python and NumPy) it neither loads Numba nor pauses the
    collector: while a background compile imports Numba, importing it here would wait.
    """
    key = source_key(source)
    name = f"_symdiff_k_{key}"
    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(name, threading.Lock())
    with lock:
        if name in sys.modules:
            return sys.modules[name], True
        return _import(source, key, name, numba)


def _import(source: str, key: str, name: str, numba: bool):
    path = cache_dir() / f"k_{key}.py"
    with _other_processes_wait(path.with_suffix(".lock")):
        reused = _valid(path, key)
        if not reused:
            _write_atomically(path, source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: Numba's cache loads look it up by name
        try:
            with compiling() if numba else contextlib.nullcontext():
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module, reused


@contextlib.contextmanager
def compiling():
    """Python's cyclic garbage collector paused while Numba compiles: a compile makes objects
    by the hundred thousand, and the collections they set off took 10-15% of its time
    (measured on small kernels and a convolution's). It resumes, and collects, when the last
    compile under way in the process ends."""
    global _pauses, _resume
    with _PAUSE_LOCK:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
            _plain_numba_errors()
        _pauses += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


_NUMBA_IMPORT = threading.Lock()


def import_numba():
    """Numba, imported by one thread at a time: a kernel loading in the background and the
    main thread importing it at once made a kernel module's `from numba.types import Array`
    fail in 3 of 12 new processes on empty caches."""
    with _NUMBA_IMPORT:
        import numba
        import numba.types  # noqa: F401  (what generated modules import from)
        import numba.extending  # noqa: F401
    return numba


@functools.cache  # once per process
def _plain_numba_errors() -> None:
    """Numba marks up each error message it formats (type inference formats and drops many as
    it tries overloads) inside colorama's init() and deinit(), which replace sys.stdout and
    sys.stderr for the whole process, then put back the streams of the moment init() ran. From
    a compile on another thread, that undid a redirection of sys.stdout the main thread made
    meanwhile: its prints went to the old stream. Under Numba's default colour scheme,
    no_color, the markup is only bold: here the scheme's parts return the text as it is and
    touch no stream. A colour scheme the user chose is kept."""
    import_numba()
    from numba.core import config, errors
    if config.COLOR_SCHEME == "no_color" and hasattr(errors, "HighlightColorScheme"):
        scheme = errors.termcolor()  # one instance, which Numba's modules hold from import
        for part in ("code", "errmsg", "filename", "indicate", "highlight", "reset"):
            setattr(scheme, part, str)


@contextlib.contextmanager
def _other_processes_wait(lock_path: Path):
    """Hold an exclusive lock on `lock_path` (where the OS has flock): another process
    importing the same module meanwhile waits, then loads the machine code this one's compile
    left in Numba's cache, instead of compiling it a second time."""
    if fcntl is None:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_hit(dispatcher) -> bool:
    """Whether a Numba dispatcher's machine code all came from its on-disk cache."""
    stats = dispatcher.stats
    return bool(stats.cache_hits) and not stats.cache_misses


def _valid(path: Path, key: str) -> bool:
    try:
        return source_key(path.read_text(encoding="utf-8")) == key
    except (OSError, UnicodeDecodeError):
        return False


def _write_atomically(path: Path, source: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
