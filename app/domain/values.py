"""What a value must be to be stored and read back exactly, and JSON read so that nothing is lost.

The rule (docs/security.md, Input): everything accepted is stored and read back identically;
anything else is refused, naming the field. Storage writes JSON with orjson (SQLite bodies,
exports, diffs) or BSON (MongoDB), so a value is storable when it is

- text without lone surrogates (orjson and BSON refuse them: they are not Unicode text) and
  without control characters (TAB, LF and CR only, in free text; none in ids);
- an integer of at most 64 bits, signed (SQLite, orjson and BSON stop there);
- a finite float (JSON has no NaN or Infinity: orjson writes them as null, a silent change),
  not -0.0 (FerretDB reads it back as 0.0);
- objects with text keys without '.', and lists, nested at most `MAX_DEPTH` levels;
- true, false or null.

`loads` reads JSON text as the standard library does, except that an object with the same key
twice is refused (which of the two a parser keeps is undefined: another parser in front of this
one may have seen the other), and NaN, Infinity, -Infinity and numbers beyond a float's range
come back as `NotANumber`, which no field accepts and `problems` names.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
# Bodies and lines are checked this deep (MongoDB refuses documents nested past 100 levels; a
# payload's own structure is 3 levels, extras get 32 of their own).
MAX_DEPTH = 48
# Control characters (Unicode category Cc) and lone surrogates. Free text may hold TAB, LF, CR.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# MongoDB wire servers (FerretDB) refuse a '.' in a key; every accepted value must be storable
# in every store (`termsync db copy` moves a database from one to another).
_DOT_IN_KEY = "Holds '.', which MongoDB wire servers (FerretDB) refuse in a key."
# More digits than this cannot be a 64-bit integer; also below Python's 4,300-digit int limit.
_LONGEST_INTEGER = 20


class NotJSON(ValueError):
    """The text is not JSON this server takes (a syntax error, a key given twice, too deep);
    the message says why, to follow "... is not valid JSON: "."""


class TooDeep(NotJSON):
    """The JSON is nested deeper than the parser's stack allows."""


class NotANumber:
    """A JSON number with no exact stored form (NaN, Infinity, 1e999, a 5,000-digit integer)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _number_constant(text: str) -> NotANumber:
    return NotANumber(text)


def _float(text: str) -> float | NotANumber:
    value = float(text)
    return value if math.isfinite(value) else NotANumber(text)


def _int(text: str) -> int | NotANumber:
    return int(text) if len(text) <= _LONGEST_INTEGER else NotANumber(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise NotJSON(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return result


def loads(text: str | bytes) -> Any:
    """JSON text as Python values; NotJSON for a syntax error, a repeated key or deep nesting."""
    try:
        if isinstance(text, bytes | bytearray):  # as json.loads reads bytes
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except RecursionError:
        raise TooDeep("nested too deeply to read") from None
    except NotJSON:
        raise
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise NotJSON(str(exc)) from None


# One decoder for every call (json.loads with hooks builds a new one each time).
_DECODER = json.JSONDecoder(parse_constant=_number_constant, parse_float=_float, parse_int=_int,
                            object_pairs_hook=_object)


def text_problem(text: str) -> str | None:
    """Why free text cannot be stored as it is, or None (TAB, LF and CR are allowed)."""
    found = _NOT_TEXT.search(text)
    return None if found is None else _character_problem(found.group())


def line_problem(text: str) -> str | None:
    """Why text that goes into a URL or a header line cannot, or None: no control character at
    all (a CR or LF would end the header line), no lone surrogate."""
    found = _NOT_IN_LINE.search(text)
    return None if found is None else _character_problem(found.group())


def id_problem(text: str) -> str | None:
    """Why an id (it goes into URLs and headers) cannot be taken as it is, or None."""
    problem = line_problem(text)
    if problem is not None:
        return problem
    if text in (".", ".."):
        return "'.' and '..' are not ids: a URL path cannot hold them as a segment."
    return None


def _character_problem(character: str) -> str:
    code = f"U+{ord(character):04X}"
    if "\ud800" <= character <= "\udfff":
        return f"Holds a lone surrogate ({code}), which is not Unicode text."
    return f"Holds the control character {code}."


def number_problem(value: Any) -> str | None:
    """Why a number cannot be stored exactly, or None (booleans are not numbers here)."""
    if isinstance(value, NotANumber):
        if value.text.lstrip("-").isdigit():
            return f"The integer {value.text} does not fit in 64 bits (signed)."
        return (f"{value.text} is not a number JSON can carry exactly: JSON has no NaN or "
                "Infinity, and a float ends near 1.8e308.")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"The integer {value} does not fit in 64 bits (signed)."
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a number JSON can carry: JSON has no NaN or Infinity."
    if isinstance(value, float) and value == 0.0 and math.copysign(1.0, value) < 0:
        return "-0.0 would read back as 0.0 from a MongoDB wire server (FerretDB); send 0."
    return None


Path = tuple[str | int, ...]


def storable(value: Any, depth: int = 0) -> bool:
    """Whether `problems(value)` finds nothing: the same rules, without building the paths
    (every payload of an import passes here: this is the fast way through for valid ones)."""
    kind = type(value)
    if kind is str:  # isprintable: no control character, no surrogate (and no TAB, LF, CR)
        return value.isprintable() or _NOT_TEXT.search(value) is None
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or "." in key or _NOT_TEXT.search(key) is not None:
                return False
            if not storable(item, depth + 1):
                return False
        return True
    if kind is list:
        return depth < MAX_DEPTH and all(storable(item, depth + 1) for item in value)
    if value is None or kind is bool:
        return True
    if kind is int:
        integer: int = value
        return INT64_MIN <= integer <= INT64_MAX
    if kind is float:
        return math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0)
    return not problems(value, ("",), depth)  # anything else: by the rules themselves


def problems(value: Any, path: Path = (), depth: int = 0) -> list[tuple[Path, str]]:
    """Every part of `value` that cannot be stored and read back exactly, with where it is."""
    if not path and storable(value, depth):
        return []
    if isinstance(value, str):
        problem = text_problem(value)
        return [] if problem is None else [(path, problem)]
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | float | NotANumber):
        problem = number_problem(value)
        return [] if problem is None else [(path, problem)]
    if depth >= MAX_DEPTH:
        return [(path, f"Nested deeper than {MAX_DEPTH} levels.")]
    found: list[tuple[Path, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(((*path, str(key)), "Keys must be text."))
                continue
            problem = text_problem(key) or (_DOT_IN_KEY if "." in key else None)
            if problem is not None:
                found.append(((*path, key), f"The key {key!r} {problem[0].lower()}{problem[1:]}"))
                continue
            found.extend(problems(item, (*path, key), depth + 1))
        return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(problems(item, (*path, index), depth + 1))
        return found
    return []  # a value a schema made (a date, an enum): stored by its own field's rules


def printable(value: Any) -> Any:
    """`value` (text, or lists and dicts of it) with lone surrogates written as escapes
    ('\\ud800'), so that a message or path that quotes bad input can itself be sent and stored."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [printable(item) for item in value]
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    return value


def as_messages(found: list[tuple[Path, str]]) -> dict[str | int, Any]:
    """`problems` as marshmallow words its errors: {"names": {0: {"name": ["..."]}}}."""
    messages: dict[str | int, Any] = {}
    for path, message in found:
        path = tuple(printable(part) for part in path)
        node = messages
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if isinstance(child, list):  # the part has errors of its own and of its parts
                child = node[part] = {"_schema": child}
            node = child
        key = path[-1] if path else "_schema"
        if isinstance(node.get(key), dict):
            node[key].setdefault("_schema", []).append(message)
        else:
            node.setdefault(key, []).append(message)
    return messages
