"""What a notebook's parameters mean, declared beside their defaults and checked before a run.

The parameters cell holds literals. A comment after a literal may begin with its rule, ended by ";"
where a description follows:

    SEED = 0  # in 0..2**32-1; seeds the weights
    TARGET = 7  # digit; the class the trigger forces
    P = 53  # prime; the modulus
    LR = 1e-3  # in (0, 1]
    N_VAL = 2_000  # in 1..N_DEFENDER-1; a bound may use other parameters
    N_HEADS = 4  # > 0 and divides D_MODEL
    FLIP_TO = 8  # digit and not FLIP_FROM
    DIM_FEATURES = 100  # at least 10
    WIDTHS = [16, 32, 64]  # list of int > 0
    FAMILY = "uniform"  # one of "uniform", "spaced"

A rule is clauses joined by "and": `digit` (an int in 0..9), `prime`, `in A..B` (both ends included),
`in (A, B]` (an interval: a bracket includes its end, a parenthesis excludes it), `> A`, `< A`,
`at least A`, `at most A`, `not A`, `divides A`; or `one of X, Y, ...` (Python literals); or `list of T` (T: int, float,
str or bool) followed by a rule for each element, for a non-empty list. A and B are numbers, or
arithmetic (+ - * // **) of numbers and other parameters. A comment that does not begin with a rule's
first word is a description only. No "=" in the comment: papermill skips a line that holds two
(so the rules say "at least", not ">="). Whatever the rules, a value has its default's type (an int may
stand for a float) and every float is finite.
"""
import ast
import io
import json
import math
import operator
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_RULE_START = re.compile(r"(digit|prime)\b|in\s|in[\[(]|[<>]|(at least|at most|not|divides|one of|list of)\s")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Pow: operator.pow}
_COMPARE = {">": operator.gt, "<": operator.lt, "at least": operator.ge, "at most": operator.le, "not": operator.ne}
NOT_A_LITERAL = object()  # the default of an assignment that is not a literal (refused if set)


@dataclass(frozen=True)
class Clause:
    text: str  # what the value must be, as the message says it: "a digit in 0..9", "in 1..N_DEFENDER-1"
    holds: Callable[[Any, dict], bool]  # (value, every parameter's value) -> True if the value satisfies it
    names: frozenset  # the other parameters its bounds read


@dataclass(frozen=True)
class Rule:
    text: str  # as written in the comment, e.g. "in (0, 1]"
    clauses: tuple  # of Clause, all must hold (for a list: for every element)
    element: type | None = None  # list of this type; None: not a list rule

    @property
    def names(self) -> frozenset:
        return frozenset().union(*(c.names for c in self.clauses))

    def describe(self) -> str:
        """What a value must be: "in (0, 1]", "a non-empty list of float in [0, 1)"."""
        what = " and ".join(c.text for c in self.clauses)
        if self.element is None:
            return what
        return f"a non-empty list of {self.element.__name__}" + (f" {what}" if what else "")


@dataclass(frozen=True)
class Declaration:
    name: str
    default: Any  # the literal, or NOT_A_LITERAL
    source: str  # the default as written
    rule: Rule | None  # None: no rule declared


class RuleError(ValueError):
    """A rule comment that cannot be read; the message is one line."""


def _bound(text: str) -> tuple[ast.expr, frozenset]:
    """Parse a bound: numbers, other parameters' names, + - * // ** and unary minus."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise RuleError(f"{text.strip()!r} is not a number or arithmetic of parameters") from None
    for node in ast.walk(tree):
        allowed = (isinstance(node, ast.Constant) and type(node.value) in (int, float)
                   or isinstance(node, ast.BinOp) and type(node.op) in _OPS
                   or isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
                   or isinstance(node, (ast.Name, ast.operator, ast.unaryop, ast.expr_context)))
        if not allowed:
            raise RuleError(f"{text.strip()!r} is not a number or arithmetic of parameters")
    return tree, frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))


def _value(node: ast.expr, env: dict) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        value = _value(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    left, right = _value(node.left, env), _value(node.right, env)
    if isinstance(node.op, ast.Pow) and abs(right) > 1024:
        raise RuleError(f"exponent {right} is too large for a bound")
    return _OPS[type(node.op)](left, right)


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the first 12 primes as bases: exact below 3.3e24."""
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if n < 2 or n >= 3 * 10**24:
        return False
    if n in bases or any(n % b == 0 for b in bases):
        return n in bases
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for b in bases:
        x = pow(b, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _clause(text: str) -> Clause:
    text = " ".join(text.split())
    is_int = lambda v: type(v) is int  # noqa: E731 (bool is not a digit)
    if text == "digit":
        return Clause("a digit in 0..9", lambda v, env: is_int(v) and 0 <= v <= 9, frozenset())
    if text == "prime":
        return Clause("a prime", lambda v, env: is_int(v) and _is_prime(v), frozenset())
    if m := re.fullmatch(r"in ?([\[(])(.+),(.+)([\])])", text):
        (lo, lo_names), (hi, hi_names) = _bound(m[2]), _bound(m[3])
        above, below = (operator.ge if m[1] == "[" else operator.gt), (operator.le if m[4] == "]" else operator.lt)
        return Clause(f"in {m[1]}{m[2].strip()}, {m[3].strip()}{m[4]}",
                      lambda v, env: above(v, _value(lo, env)) and below(v, _value(hi, env)), lo_names | hi_names)
    if m := re.fullmatch(r"in (.+?) ?\.\. ?(.+)", text):
        (lo, lo_names), (hi, hi_names) = _bound(m[1]), _bound(m[2])
        return Clause(f"in {m[1]}..{m[2]}", lambda v, env: _value(lo, env) <= v <= _value(hi, env), lo_names | hi_names)
    if m := re.fullmatch(r"(>|<|at least|at most|not) ?(.+)", text):
        compare, (bound, names) = _COMPARE[m[1]], _bound(m[2])
        return Clause(f"{m[1]} {m[2]}", lambda v, env: compare(v, _value(bound, env)), names)
    if m := re.fullmatch(r"divides (.+)", text):
        bound, names = _bound(m[1])
        return Clause(f"a divisor of {m[1]}", lambda v, env: v != 0 and _value(bound, env) % v == 0, names)
    raise RuleError(f"{text!r} is not a rule: use digit, prime, in A..B, in (A, B], > A, < A, at least A, at most A, "
                    "not A, divides A, one of X, Y, or list of T followed by a rule")


def _one_of(text: str) -> Clause:
    try:
        allowed = ast.literal_eval(f"({text},)")
    except (ValueError, SyntaxError):
        raise RuleError(f"one of {text}: the choices must be Python literals separated by commas") from None
    shown = ", ".join(map(repr, allowed)).replace("'", '"')
    return Clause(f"one of {shown}", lambda v, env: any(type(v) is type(a) and v == a for a in allowed), frozenset())


def parse_rule(text: str) -> Rule:
    """A rule from the text of its comment (before any ";"); raises RuleError."""
    text = " ".join(text.split())
    element = None
    if m := re.fullmatch(r"list of (\w+) ?(.*)", text):
        if m[1] not in TYPES:
            raise RuleError(f"list of {m[1]}: the element type must be one of {', '.join(TYPES)}")
        element, body = TYPES[m[1]], m[2]
    else:
        body = text
    if not body:
        clauses = ()
    elif body.startswith("one of "):
        clauses = (_one_of(body[len("one of "):]),)
    else:
        clauses = tuple(_clause(part) for part in re.split(r" and ", body))
    return Rule(text, clauses, element)


def _split_comment(comment: str) -> str | None:
    """The rule part of a comment ("# in 0..9; the class" -> "in 0..9"), or None for a description."""
    text = comment.lstrip("#").strip()
    if not _RULE_START.match(text):
        return None
    quote = None
    for i, ch in enumerate(text):  # the first ";" outside a quoted string ends the rule
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            return text[:i].strip()
    return text


def parse(source: str, where: str = "the parameters cell") -> dict[str, Declaration]:
    """The declarations of a parameters cell: each assignment's default and the rule in its comment."""
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    declared = {}
    for stmt in ast.parse(source).body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue  # the journal's conventions test refuses anything but NAME = literal
        name, text = stmt.targets[0].id, ast.get_source_segment(source, stmt.value)
        try:
            default = ast.literal_eval(stmt.value)
        except (ValueError, TypeError, SyntaxError):
            default = NOT_A_LITERAL
        comment = comments.get(stmt.end_lineno, "")
        if "=" in comment:
            raise RuleError(f"{where}: the comment of {name} holds '=', so papermill would not see {name} "
                            "(it skips a line with two): write 'at least', 'at most', 'not' instead of >=, <=, !=")
        rule_text = _split_comment(comment)
        try:
            rule = parse_rule(rule_text) if rule_text is not None else None
        except RuleError as err:
            raise RuleError(f"{where}: the rule of {name} ({rule_text}) cannot be read: {err}") from None
        if rule is not None and default is not NOT_A_LITERAL and (type(default) is list) != (rule.element is not None):
            raise RuleError(f"{where}: the rule of {name} ({rule_text}) does not fit its default {text}: "
                            "a list takes 'list of T ...', anything else a rule for one value")
        declared[name] = Declaration(name, default, text, rule)
    for d in declared.values():
        unknown = sorted(n for n in (d.rule.names if d.rule else ()) if n not in declared
                         or type(declared[n].default) not in (int, float))
        if unknown:
            raise RuleError(f"{where}: the rule of {d.name} ({d.rule.text}) names {', '.join(unknown)}, "
                            "which is not a numeric parameter of this cell")
    return declared


def cell_source(notebook: Path) -> str:
    """The source of the notebook's cell tagged 'parameters'."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else source
    raise ValueError(f"{Path(notebook).name} has no cell tagged 'parameters'")


def declarations(notebook: Path) -> dict[str, Declaration]:
    """The parameters a notebook declares, with their defaults and rules."""
    return parse(cell_source(notebook), Path(notebook).stem)


def _of_type(value: Any, kind: type) -> bool:
    """True if `value` is a `kind` (bool is not an int; an int may stand for a float)."""
    return type(value) is kind or kind is float and type(value) is int


def _type_error(default: Any, value: Any) -> bool:
    return default is not NOT_A_LITERAL and default is not None and not _of_type(value, type(default))


def _floats(value: Any) -> list:
    return [v for v in (value if isinstance(value, list) else [value]) if type(v) is float]


def _broken(d: Declaration, value: Any, env: dict) -> str | None:
    """Why `value` breaks d's rule (a line without the notebook's name), or None."""
    rule = d.rule
    if rule is None:
        if type(d.default) in (int, float) and d.default > 0 and value <= 0:
            return f"{d.name} is a size, a count or a rate and must be > 0 (default {d.default!r}), got {value!r}"
        return None
    items = value if rule.element is not None else [value]
    if rule.element is not None and not value:
        return f"{d.name} must be {rule.describe()}, got {value!r}"
    for i, item in enumerate(items):
        if rule.element is not None and not _of_type(item, rule.element):
            return f"{d.name} must be {rule.describe()}, got {value!r} (element {i} is {item!r})"
        for clause in rule.clauses:
            try:
                ok = clause.holds(item, env)
            except (TypeError, ZeroDivisionError, OverflowError):
                ok = False
            if not ok:
                got = f"{value!r} (element {i} is {item!r})" if rule.element is not None else repr(value)
                bounds = ", ".join(f"{n} is {env[n]!r}" for n in sorted(clause.names))
                return f"{d.name} must be {rule.describe()}{f' ({bounds})' if bounds else ''}, got {got}"
    return None


def check(notebook: Path, values: dict, declared: dict[str, Declaration] | None = None) -> None:
    """Refuse `values` (parameter name -> value, the others keep their defaults) that the notebook does
    not declare, of another type than the default, holding a float that is not finite, or breaking a
    rule (every parameter's rule is checked, since a bound may read a parameter that changed). Raises
    ValueError or TypeError with one line naming the notebook, the parameter, the rule and the value."""
    stem = Path(notebook).stem
    declared = declarations(notebook) if declared is None else declared
    for name, value in values.items():
        if name not in declared:
            raise ValueError(f"{stem} has no parameter {name!r}; its parameters: {', '.join(declared)}")
        d = declared[name]
        if d.default is NOT_A_LITERAL:
            raise ValueError(f"{stem}: the default of parameter {name} ({d.source}) is not a literal; "
                             "the parameters cell holds literals only")
        if _type_error(d.default, value):
            raise TypeError(f"{stem}: parameter {name} must be {type(d.default).__name__} (default {d.default!r}), "
                            f"got {value!r} ({type(value).__name__})")
        if any(not math.isfinite(v) for v in _floats(value)):
            raise ValueError(f"{stem}: {name} must be finite, got {value!r}")
    env = {n: d.default for n, d in declared.items() if d.default is not NOT_A_LITERAL} | values
    for name, d in declared.items():
        if name in env and (name in values or d.rule is not None):
            problem = _broken(d, env[name], env)
            if problem:
                raise ValueError(f"{stem}: {problem}")


def check_namespace(notebook: Path, namespace: dict) -> None:
    """Check the values a kernel holds for the notebook's parameters (a reader may have edited the
    parameters cell by hand) against the notebook's rules, as `check` does."""
    declared = declarations(notebook)
    check(notebook, {n: namespace[n] for n in declared if n in namespace}, declared)
