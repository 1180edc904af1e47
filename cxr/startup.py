"""TensorFlow's import, without the two lines its native libraries print on every start.

TensorFlow 2.21's shared libraries each write, while they load and before Python can configure them,
`WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
`I... port.cc:153] oneDNN custom operations are on. ...` straight to file descriptor 2 (twice: two
libraries). `TF_CPP_MIN_LOG_LEVEL` does not reach them (absl is not initialised yet), and turning oneDNN
off to silence the second would change the numerics and the speed. So the first `import tensorflow` in a
process runs with file descriptor 2 sent to a temporary file, and everything written there is then
written to the real stderr except those exact lines: a real error during the import is still shown, in
order, and an import that fails shows all of it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator

NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(rb"^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*$"),
)


def without_noise(text: bytes) -> bytes:
    """The text less the lines TensorFlow's libraries print on every load."""
    lines = text.splitlines(keepends=True)
    return b"".join(line for line in lines if not any(p.match(line.rstrip(b"\r\n")) for p in NOISE))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; then write it out, less the noise
    (all of it when the block raises)."""
    if sys.stderr:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter (a daemon with fd 2 closed)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            if sys.stderr:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read()
            kept = text if failed else without_noise(text)
            while kept:
                kept = kept[os.write(2, kept) :]


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._inner
        with filtered_stderr():
            self._inner.exec_module(module)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, as the other finders would, and wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Install the filter for this process's first `import tensorflow` (nothing when it is already imported)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())
