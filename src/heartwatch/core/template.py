"""Per-instance values in a service's settings: ``{instance}``, ``{name}``, small arithmetic.

A service with ``instances = N`` runs as ``name@0`` ... ``name@N-1``; its templated settings
(``command``, ``cwd``, ``env`` values, probe commands, ...) are written once with fields:

- ``{instance}``: the instance's number, 0 to N-1;
- ``{name}``: the instance's own name, ``emulator@3`` (what ``HEARTWATCH_SERVICE`` says);
- ``{5554 + 2 * instance}``: integer arithmetic on ``instance`` (``+ - * // %``, unary
  minus, parentheses, integer literals), so an emulator's console port is one line;
- ``{{`` and ``}}``: a literal brace (``awk '{{print $1}}'``).

Why arithmetic and not a per-instance table: the values of a farm follow a rule (ports step
by two, serials follow the ports), and a rule is written once for any N, where a table must
be rewritten at every ``scale``. Why not ``str.format`` or ``eval``: nothing a file says may
run as code. The field is parsed with ``ast`` and only the nodes above are evaluated; any
other (a call, an attribute, a float, ``**``, a name other than ``instance``) is an error
that says what is allowed. Results are bounded (``MAX_MAGNITUDE``), so no field can build a
number of a million digits.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["MAX_MAGNITUDE", "TemplateError", "expand", "fields_in"]

MAX_MAGNITUDE = 10**12  # larger than any port, serial or offset a farm needs
_MAX_FIELD = 200  # characters inside one pair of braces
_ALLOWED = "integers, `instance`, + - * // %, parentheses"


class TemplateError(ValueError):
    """A template cannot be expanded; the message says why (the caller adds the key)."""


@dataclass(frozen=True, slots=True)
class _Field:
    expression: ast.expr | None  # None: the field is ``name``
    text: str


def expand(template: str, instance: int, name: str) -> str:
    """``template`` with every field replaced for ``instance`` (named ``name``)."""
    out: list[str] = []
    for literal, field in _split(template):
        out.append(literal)
        if field is not None:
            out.append(name if field.expression is None else str(_evaluate(field, instance)))
    return "".join(out)


def fields_in(text: str) -> list[str]:
    """The fields of ``text`` that an expansion would replace, as written (``{instance}``);
    braces that are no field (``awk '{print $1}'``, ``${HOME}``, ``{{``) are not among them."""
    found: list[str] = []
    index = 0
    while index < len(text):
        pair = text[index : index + 2]
        if pair in ("{{", "}}"):
            index += 2
            continue
        end = text.find("}", index + 1) if text[index] == "{" else -1
        if end < 0:
            index += 1
            continue
        try:
            _parse_field(text[index + 1 : end])
        except TemplateError:
            index += 1
            continue
        found.append(text[index : end + 1])
        index = end + 1
    return found


def _split(template: str) -> list[tuple[str, _Field | None]]:
    """The literal text before each field, and the field (``None`` after the last one)."""
    parts: list[tuple[str, _Field | None]] = []
    literal: list[str] = []
    index, size = 0, len(template)
    while index < size:
        char = template[index]
        if char in "{}" and template[index + 1 : index + 2] == char:
            literal.append(char)  # {{ or }}: a brace of the text itself
            index += 2
        elif char == "}":
            raise TemplateError(f"a single '}}' at position {index}: write '}}}}' for a brace")
        elif char == "{":
            end = template.find("}", index + 1)
            if end < 0:
                raise TemplateError(
                    f"a '{{' at position {index} is never closed: write '{{{{' for a brace"
                )
            parts.append(("".join(literal), _parse_field(template[index + 1 : end])))
            literal = []
            index = end + 1
        else:
            literal.append(char)
            index += 1
    parts.append(("".join(literal), None))
    return parts


def _parse_field(text: str) -> _Field:
    stripped = text.strip()
    if stripped == "name":
        return _Field(None, text)
    if not stripped:
        raise TemplateError("an empty field '{}': write '{{}}' for braces")
    if len(stripped) > _MAX_FIELD:
        raise TemplateError(f"the field {{{stripped[:20]}…}} is longer than {_MAX_FIELD}")
    if "{" in stripped:
        raise TemplateError(f"'{{' inside the field {{{stripped}}}: fields do not nest")
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError:
        raise TemplateError(f"{{{stripped}}} is not an expression of {_ALLOWED}") from None
    _check(tree.body, stripped)
    return _Field(tree.body, stripped)


def _check(node: ast.expr, text: str) -> None:
    """Refuse, before any instance is expanded, every node outside the small language."""
    if isinstance(node, ast.BinOp) and isinstance(
        node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)
    ):
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, text)
    elif isinstance(node, ast.Name):
        if node.id == "name":
            raise TemplateError(f"{{{text}}}: `name` is text, not a number: write {{name}} alone")
        if node.id != "instance":
            raise TemplateError(
                f"{{{text}}}: unknown name `{node.id}` (fields know `instance` and `name`)"
            )
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        pass
    else:
        what = "/ (use // for whole numbers)" if _is_true_division(node) else "it"
        raise TemplateError(f"{{{text}}}: {what} is not allowed; a field takes {_ALLOWED}")


def _is_true_division(node: ast.expr) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)


def _evaluate(field: _Field, instance: int) -> int:
    assert field.expression is not None
    value = _value(field.expression, instance, field.text)
    if abs(value) > MAX_MAGNITUDE:
        raise TemplateError(f"{{{field.text}}} is {value} for instance {instance}: too large")
    return value


def _value(node: ast.expr, instance: int, text: str) -> int:
    if isinstance(node, ast.Constant):
        value = node.value
        assert type(value) is int  # _check allowed nothing else
        return value
    if isinstance(node, ast.Name):
        return instance
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, instance, text)
        return -operand if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.BinOp)
    left, right = _value(node.left, instance, text), _value(node.right, instance, text)
    # Each step bounded too: a product of literals must not grow without limit.
    for side in (left, right):
        if abs(side) > MAX_MAGNITUDE:
            raise TemplateError(f"{{{text}}} is too large for instance {instance}")
    op = node.op
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if right == 0:
        raise TemplateError(f"{{{text}}} divides by zero for instance {instance}")
    return left // right if isinstance(op, ast.FloorDiv) else left % right
