"""Numbers exactly as written: a YAML number with a decimal point is the decimal of its text, not the
nearest binary float (`discount: 0.06` binds 0.06, so `:discount + 0.01` is 0.07 on the server), and a
`--param` value is typed as YAML types the same text.

YAML's own float resolution throws the text away; `ExactLoader` (yaml.SafeLoader with the number
constructors changed, so still safe_load) keeps it on the float (`WrittenFloat.text`), and `exact()`
turns such a float into `decimal.Decimal` where a value is bound. Settings that are floats (durations,
delays) keep working: a WrittenFloat is a float. YAML 1.1's base-60 numbers (12:30 read as 750) stay
the text they are written as.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import yaml

from runner.errors import UsageError


class WrittenFloat(float):
    """A float read from YAML, with the text it was written as."""

    text: str

    def __new__(cls, value: float, text: str) -> "WrittenFloat":
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class ExactLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose floats remember their text."""


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if ":" in str(node.value):  # YAML 1.1's base-60 (1:30.5 is 90.5): a time of day as written, kept as text
        return str(node.value)
    value = yaml.SafeLoader.construct_yaml_float(loader, node)
    if math.isfinite(value):  # not .inf/.nan
        return WrittenFloat(value, str(node.value).replace("_", ""))
    return value


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if ":" in str(node.value):  # base 60 again: 12:30 is the text 12:30, not 750
        return str(node.value)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def keep_written_numbers(constructor: type[yaml.constructor.SafeConstructor]) -> None:
    """Give a safe constructor (a loader of runner/config/yamlfile.py) the number constructors above."""
    constructor.add_constructor("tag:yaml.org,2002:float", _construct_float)
    constructor.add_constructor("tag:yaml.org,2002:int", _construct_int)


keep_written_numbers(ExactLoader)


def exact(value: Any) -> Any:
    """A value as it is bound: a float written in YAML becomes the Decimal of its text."""
    if isinstance(value, WrittenFloat):
        return decimal.Decimal(value.text)
    return value


def param_value(text: str, declared: Any = None, key: str = "KEY") -> Any:
    """A `--param KEY=TEXT` value, typed as YAML types a plain scalar: 3 is the integer 3, 0.06 the decimal
    0.06, true/false, null, 2026-01-05 a date. Quoted ('3' or "3") it is text; so it is when the job's
    own value of the parameter is text (its declared type), and when it is empty. UsageError for a quoted
    value that is not one quoted text."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:  # a quoted YAML scalar: text, with YAML's escapes
            value = yaml.load(text, Loader=ExactLoader)
        except yaml.YAMLError as exc:
            value = exc
        if not isinstance(value, str):
            raise UsageError(f"--param {key}={text}: starts and ends with a quote but is not one quoted text: inside "
                             "'...' write a quote twice (''), inside \"...\" use YAML's escapes (\\\" \\\\ \\n)")
        return value
    if isinstance(declared, str) or text == "":
        return text
    loader = ExactLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        value = exact(loader.construct_object(yaml.ScalarNode(tag, text), deep=True))
    except (yaml.YAMLError, ValueError):
        return text
    finally:
        loader.dispose()
    return value


def type_name(value: Any) -> str:
    """How --dry-run names a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((int, "integer"), (decimal.Decimal, "decimal"), (float, "float"), (str, "text"),
                       (dt.datetime, "datetime"), (dt.date, "date"), (bytes, "binary")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def shown(value: Any) -> str:
    """A bound value with its type, as --dry-run prints it: 0.06 (decimal), '2026-01-05' (text), NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return f"{str(value).lower()} (boolean)"
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, decimal.Decimal):
        return f"{value} (decimal)"
    if isinstance(value, dt.date):
        return f"{value.isoformat()} ({type_name(value)})"
    return f"{value!r} ({type_name(value)})"


# SQLite keeps numbers as 64-bit integers or binary floats: a decimal is held exactly when the float
# nearest to it reads back as the same decimal (every value of up to 15 significant digits does).
def float_exact(value: decimal.Decimal) -> float | None:
    """The float that holds `value` exactly (reads back as the same decimal), or None when none does."""
    f = float(value)
    if not math.isfinite(f):
        return None
    digits = value.as_tuple().digits
    if len(digits) <= 15 and -300 < value.adjusted() < 300:
        return f
    return f if decimal.Decimal(repr(f)) == value else None
