"""How numbers and plugin-provided strings are written into Markdown."""

from __future__ import annotations

import math
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|<>#])")


def fmt_value(value: float | None, signed: bool = False) -> str:
    """Four significant digits; thousands as whole numbers; empty for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    sign = "+" if signed and value > 0 else ""
    if abs(value) >= 1e4:
        return f"{sign}{value:.0f}" if abs(value) < 1e12 else f"{sign}{value:.4g}"
    text = f"{value:.4g}"
    return sign + text


def fmt_ci(value: float | None) -> str:
    """A confidence half-width: two significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    value = float(f"{float(value):.2g}")
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:g}"


def fmt_stat(mean: float, ci: float) -> str:
    """``mean ± ci`` when there is an interval, the mean alone otherwise (deterministic columns)."""
    text = fmt_value(mean)
    if text and ci is not None and not math.isnan(ci) and ci > 0:
        text += f" ± {fmt_ci(ci)}"
    return text


def escape_cell(text: object) -> str:
    """A name that may come from a plugin but reads better unescaped (a metric column, ``test_bpc``):
    only what would break a table or open a tag is escaped."""
    value = str(text)
    if any(c in value for c in "&<>|\n\r"):
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        value = value.replace("\r", " ").replace("\n", " ")
    return value


def escape_markdown(text: object) -> str:
    """A plugin- or matrix-provided string as literal Markdown text (no markup, no table breaks)."""
    value = str(text).replace("\r", " ").replace("\n", " ")
    value = value.replace("&", "&amp;")
    return _MARKDOWN_SPECIAL.sub(
        lambda m: "&lt;" if m.group(1) == "<" else "&gt;" if m.group(1) == ">" else "\\" + m.group(1), value
    )
