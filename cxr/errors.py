"""Errors meant for people: one sentence naming the file and the fix."""


class CxrError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""
