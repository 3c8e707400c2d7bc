"""The console: one line at a time, each written whole and flushed at once."""

from __future__ import annotations

import sys


def log(line: object) -> None:
    """Print one line and flush it, so it shows at once even when stdout is a pipe."""
    _write_line(sys.stdout, line)


def log_error(line: object) -> None:
    """:func:`log` for stderr."""
    _write_line(sys.stderr, line)


def _write_line(stream, line: object) -> None:
    # One write call for the text and its newline: print() makes two, and when the stream
    # is unbuffered (PYTHONUNBUFFERED=1) each is its own write(2), so the lines of two
    # processes sharing a pipe could be cut in two by each other.
    stream.write(f"{line}\n")
    stream.flush()


def redis_print(reply: object) -> None:
    """The equivalent of node_redis's ``redis.print``: ``Reply: OK``, ``Reply: 1``.

    redis-py turns the server's ``OK`` status reply into ``True``; print what the server said.
    """
    log(f"Reply: {'OK' if reply is True else reply}")
