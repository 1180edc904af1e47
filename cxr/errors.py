"""Errors meant for people: one sentence naming the file and the fix."""


class CxrError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""


class EmptyInput(CxrError):
    """An empty file or upload."""


class UnsupportedFormat(CxrError):
    """Not a PNG, JPEG or DICOM image."""


class InputTooLarge(CxrError):
    """Over the pixel or byte limit (decompression bombs included)."""
