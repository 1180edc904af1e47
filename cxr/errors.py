"""Errors meant for people: one sentence naming the file and the fix."""

from pathlib import Path


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters: enough to name the cause in
    a one-sentence error without a third-party traceback or response body."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


def not_a_file(path) -> str:
    """Why `path`, given where an image file was expected, cannot be read: a folder, or nothing there."""
    if Path(path).is_dir():
        return f"{path} is a folder; pass the image files in it ({Path(path) / '*'})."
    return f"{path} does not exist; check the path."


class CxrError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""


class EmptyInput(CxrError):
    """An empty file or upload."""


class UnsupportedFormat(CxrError):
    """Not a PNG, JPEG or DICOM image."""


class InputTooLarge(CxrError):
    """Over the pixel or byte limit (decompression bombs included)."""


class OutOfScope(CxrError):
    """Not what the model is for (not a frontal chest X-ray): refused before any prediction (422)."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}
