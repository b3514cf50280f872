"""Printing a command's result: text or --json on stdout; messages, warnings and progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from core.text import shown_lines


class Output:
    """Human text or stable JSON on stdout; messages and progress on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def emit(self, data: object, text: Callable[[], str]) -> None:
        if self.json:
            # json.dumps escapes every control character (ensure_ascii): nothing raw gets out.
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            # Names inside went through shown(); this is the last guard for the rest of the
            # text (foreign messages, anything missed): no escape sequence reaches a terminal.
            print(shown_lines(text()))

    @staticmethod
    def note(message: str) -> None:
        print(shown_lines(message), file=sys.stderr)
