"""RFC 8941 Structured Field Dictionary parsing (what RFC 9213 targeted fields are) and sf-token/
sf-string serialization (what RFC 9211 Cache-Status needs). Parameters are parsed and dropped:
RFC 9213 2.1 says parameters on cache directives are ignored."""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Sequence


class Token(str):
    """An sf-token, kept distinct from an sf-string (both are text)."""

    __slots__ = ()


BareItem = int | float | str | bytes | bool  # str covers String and Token
Item = BareItem | list[BareItem]  # an Inner List has its items' parameters dropped too


class SFError(ValueError):
    pass


_KEY_FIRST = frozenset(string.ascii_lowercase + "*")
_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits + "_-.*")
_TOKEN_FIRST = frozenset(string.ascii_letters + "*")
_TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_TOKEN_CHARS = _TCHAR | {":", "/"}
_B64 = frozenset(string.ascii_letters + string.digits + "+/=")


class _Parser:
    __slots__ = ("i", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1

    def key(self) -> str:
        start = self.i
        if self.peek() not in _KEY_FIRST or not self.peek():
            raise SFError("key")
        self.i += 1
        while self.peek() and self.peek() in _KEY_CHARS:
            self.i += 1
        return self.s[start : self.i]

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == "-" or (c.isdigit() and c.isascii()):
            return self.number()
        if c == '"':
            return self.sf_string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c and c in _TOKEN_FIRST:
            start = self.i
            self.i += 1
            while self.peek() and self.peek() in _TOKEN_CHARS:
                self.i += 1
            return Token(self.s[start : self.i])
        raise SFError("item")

    def number(self) -> int | float:
        # RFC 8941 4.2.4
        start = self.i
        if self.peek() == "-":
            self.i += 1
        digits_start = self.i
        is_decimal = False
        while True:
            c = self.peek()
            if c.isascii() and c.isdigit():
                self.i += 1
            elif c == "." and not is_decimal:
                if self.i - digits_start > 12:
                    raise SFError("decimal")
                is_decimal = True
                self.i += 1
            else:
                break
            if not is_decimal and self.i - digits_start > 15:
                raise SFError("integer")
            if is_decimal and self.i - digits_start > 16:
                raise SFError("decimal")
        text = self.s[digits_start : self.i]
        if not text or not text[0].isdigit():
            raise SFError("number")
        if is_decimal:
            if text.endswith(".") or len(text.split(".")[1]) > 3:
                raise SFError("decimal")
            return float(self.s[start : self.i])
        return int(self.s[start : self.i])

    def sf_string(self) -> str:
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\") or not nxt:
                    raise SFError("escape")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not (" " <= c <= "~"):
                raise SFError("string char")
            else:
                out.append(c)
        raise SFError("unterminated string")

    def byte_sequence(self) -> bytes:
        end = self.s.find(":", self.i + 1)
        if end < 0:
            raise SFError("bytes")
        body = self.s[self.i + 1 : end]
        if any(c not in _B64 for c in body):
            raise SFError("bytes")
        self.i = end + 1
        try:
            return base64.b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as e:
            raise SFError("bytes") from e

    def boolean(self) -> bool:
        self.i += 1
        c = self.peek()
        if c not in ("0", "1") or not c:
            raise SFError("boolean")
        self.i += 1
        return c == "1"

    def parameters(self) -> None:
        while self.peek() == ";":
            self.i += 1
            self.skip(" ")
            self.key()
            if self.peek() == "=":
                self.i += 1
                self.bare_item()

    def item_or_inner_list(self) -> Item:
        if self.peek() == "(":
            self.i += 1
            items: list[BareItem] = []
            while True:
                self.skip(" ")
                if self.peek() == ")":
                    self.i += 1
                    self.parameters()
                    return items
                if not self.peek():
                    raise SFError("inner list")
                items.append(self.bare_item())
                self.parameters()
                if self.peek() not in (" ", ")") or not self.peek():
                    raise SFError("inner list")
        item = self.bare_item()
        self.parameters()
        return item


def parse_dictionary(value: str) -> dict[str, Item]:
    """RFC 8941 4.2.2. Raises SFError on any syntax error (the caller then ignores the field)."""
    p = _Parser(value)
    p.skip(" ")
    out: dict[str, Item] = {}
    if not p.peek():
        return out
    while True:
        key = p.key()
        if p.peek() == "=":
            p.i += 1
            out[key] = p.item_or_inner_list()
        else:
            out[key] = True
            p.parameters()
        p.skip(" \t")
        if not p.peek():
            return out
        if p.peek() != ",":
            raise SFError("expected comma")
        p.i += 1
        p.skip(" \t")
        if not p.peek():
            raise SFError("trailing comma")


def parse_dictionary_lines(lines: Sequence[str]) -> dict[str, Item]:
    """RFC 8941 4.2: multiple field lines are combined with commas before parsing."""
    return parse_dictionary(", ".join(line.strip(" \t") for line in lines))


def is_token(value: str) -> bool:
    return bool(value) and value[0] in _TOKEN_FIRST and all(c in _TOKEN_CHARS for c in value[1:])


def serialize_string(value: str) -> str:
    """sf-string (RFC 8941 4.1.6); characters it cannot carry become '?'."""
    chars = []
    for c in value:
        if c in ('"', "\\"):
            chars.append("\\" + c)
        elif " " <= c <= "~":
            chars.append(c)
        else:
            chars.append("?")
    return '"' + "".join(chars) + '"'


def serialize_token_or_string(value: str) -> str:
    return value if is_token(value) else serialize_string(value)
