"""The scoring SQL (pipelines.matching.scoring.score_sql) and the veto condition, evaluated in
Python on a few rows, with DuckDB's semantics.

Why: a live record has a handful of candidate pairs. DuckDB takes ~6 ms to plan and run
the scoring statement for them (4 ms of it planning a 10,000-character CASE chain), a
tenth of the record's time at 1,000,000 profiles; the veto check costs another ~5 ms.
This module compiles the very SQL text those statements run (sqlglot parses it) into
Python functions once per model (source written from the parse tree, one function for
the whole scoring statement), so the literals, level order and arithmetic stay
splink's: there is one implementation of scoring, run by two engines. Anything it does
not know raises :class:`Unsupported` when compiled, and the caller uses DuckDB.
``tests/pipelines/matching/test_rowwise.py`` holds the two engines to the same gammas and weights
on every stored pair and on random pairs of the demo.

Semantics kept from DuckDB: NULL as ``None`` with three-valued AND/OR/NOT, a CASE
taking the first branch whose condition is true, comparisons with NULL giving NULL,
``greatest`` and ``coalesce`` skipping NULLs, and the string functions working on
characters as DuckDB 2's do (``jaro_winkler_similarity`` and ``damerau_levenshtein`` through
rapidfuzz, which implements the same algorithms; DuckDB gives 0.0 for two empty
strings)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

import sqlglot
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein
from sqlglot import exp

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]


class Unsupported(ValueError):
    """The SQL uses something this evaluator does not implement."""


def _jaro_winkler(a: str, b: str) -> float:
    if not a and not b:
        return 0.0  # DuckDB's value for two empty strings (rapidfuzz: 1.0)
    return float(JaroWinkler.similarity(a, b))


def _damerau_levenshtein(a: str, b: str) -> int:
    return int(DamerauLevenshtein.distance(a, b))


def _levenshtein(a: str, b: str) -> int:
    return int(Levenshtein.distance(a, b))


def _list_intersect(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    right = {x for x in b if x is not None}
    return list(dict.fromkeys(x for x in a if x is not None and x in right))


_STRFTIME_PARTS = {"Y": "{0.year:04d}", "m": "{0.month:02d}", "d": "{0.day:02d}"}


@lru_cache(maxsize=32)
def _strftime_format(fmt: str) -> str:
    """``fmt`` (strftime's %Y, %m, %d and literal text) as a str.format pattern."""
    out = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            if fmt[i + 1] not in _STRFTIME_PARTS:
                raise Unsupported(f"strftime format %{fmt[i + 1]}")
            out.append(_STRFTIME_PARTS[fmt[i + 1]])
            i += 2
        else:
            out.append(fmt[i].replace("{", "{{").replace("}", "}}"))
            i += 1
    return "".join(out)


#: SQL functions (lower case) -> the helper the written Python calls.
_FUNCTIONS = {
    "jaro_winkler_similarity": "_jaro_winkler",
    "damerau_levenshtein": "_damerau_levenshtein",
    "list_intersect": "_list_intersect",
}


def _column_key(column: exp.Column) -> str:
    """``"x_l"`` for the column ``x_l`` and for ``l.x`` (the veto's aliases l and r)."""
    name = column.name
    return f"{name}_{column.table}" if column.table else name


_COMPARE: dict[type[exp.Expression], str] = {exp.EQ: "==", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_ARITHMETIC: dict[type[exp.Expression], str] = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*"}
_DOUBLE_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
_PARTS: dict[type[exp.Expression], str] = {exp.Year: "year", exp.Month: "month", exp.Day: "day"}


class _Writer:
    """Writes an expression as Python source: NULL is None, each operand is evaluated
    once (into a temporary, ``_t<n>``), and CASE evaluates only the branch it takes."""

    def __init__(self, column: Callable[[str], str]):
        self.column = column  # a column's name -> the Python expression reading it
        self.count = 0

    def temp(self) -> str:
        self.count += 1
        return f"_t{self.count}"

    def strict(self, operands: list[exp.Expression], body: Callable[[list[str]], str], *, zero_divisor: bool = False) -> str:
        """``body`` of the operands' values, or None when one of them is None."""
        names = [self.temp() for _ in operands]
        tests = " or ".join(f"({n} := {self.write(o)}) is None" for n, o in zip(names, operands))
        if zero_divisor:
            tests += f" or {names[-1]} == 0"
        return f"(None if {tests} else {body(names)})"

    def write(self, node: exp.Expression) -> str:
        """``node`` as a Python expression; Unsupported when this writer does not know it."""
        for kind in (self._value, self._logic, self._operator, self._function):
            if (written := kind(node)) is not None:
                return written
        raise Unsupported(f"{type(node).__name__}: {node.sql()[:80]}")

    def _value(self, node: exp.Expression) -> str | None:
        """Columns, literals, NULL, a cast to a double."""
        if isinstance(node, exp.Paren):
            return self.write(node.this)
        if isinstance(node, exp.Column):
            return self.column(_column_key(node))
        if isinstance(node, exp.Literal):
            value: Any = node.this if node.is_string else (int(node.this) if node.is_int else float(node.this))
            return repr(value)
        if isinstance(node, exp.Boolean):
            return repr(bool(node.this))
        if isinstance(node, exp.Null):
            return "None"
        if isinstance(node, exp.Cast):
            if node.to.this not in _DOUBLE_TYPES:
                raise Unsupported(f"cast to {node.to.sql()}")
            return self.strict([node.this], lambda v: f"float({v[0]})")
        return None

    def _logic(self, node: exp.Expression) -> str | None:
        """CASE and three-valued AND, OR, NOT, IS NULL."""
        if isinstance(node, exp.Case):
            if node.this is not None:
                raise Unsupported("CASE with an operand")
            default = node.args.get("default")
            out = self.write(default) if default is not None else "None"
            for branch in reversed(node.args["ifs"]):
                out = f"({self.write(branch.args['true'])} if {self.write(branch.this)} is True else {out})"
            return out
        if isinstance(node, exp.And):
            a, b = self.temp(), self.temp()
            return (
                f"(False if ({a} := {self.write(node.this)}) is False or ({b} := {self.write(node.expression)}) is False"
                f" else (None if {a} is None or {b} is None else True))"
            )
        if isinstance(node, exp.Or):
            a, b = self.temp(), self.temp()
            return (
                f"(True if ({a} := {self.write(node.this)}) is True or ({b} := {self.write(node.expression)}) is True"
                f" else (None if {a} is None or {b} is None else False))"
            )
        if isinstance(node, exp.Not):
            return self.strict([node.this], lambda v: f"(not {v[0]})")
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise Unsupported(node.sql())
            return f"({self.write(node.this)} is None)"
        return None

    def _operator(self, node: exp.Expression) -> str | None:
        """Comparisons and arithmetic: NULL when an operand is; x / 0 is NULL."""
        if type(node) in _COMPARE or type(node) in _ARITHMETIC:
            op = _COMPARE.get(type(node)) or _ARITHMETIC[type(node)]
            return self.strict([node.this, node.expression], lambda v: f"({v[0]} {op} {v[1]})")
        if isinstance(node, exp.Pow):
            return self.strict([node.this, node.expression], lambda v: f"_pow({v[0]}, {v[1]})")
        if isinstance(node, exp.Div):  # DuckDB: x / 0 is NULL
            return self.strict([node.this, node.expression], lambda v: f"({v[0]} / {v[1]})", zero_divisor=True)
        if isinstance(node, exp.Neg):
            return self.strict([node.this], lambda v: f"(-{v[0]})")
        return None

    def _function(self, node: exp.Expression) -> str | None:
        """The functions the scoring and veto SQL call, with DuckDB's NULL handling."""
        if isinstance(node, exp.Coalesce):
            out = "None"
            for operand in reversed([node.this, *node.expressions]):
                t = self.temp()
                out = f"({t} if ({t} := {self.write(operand)}) is not None else {out})"
            return out
        if isinstance(node, exp.Greatest):  # NULLs are skipped; NULL when all are
            return f"_greatest({', '.join(self.write(e) for e in [node.this, *node.expressions])})"
        if isinstance(node, exp.Log):
            if not (isinstance(node.this, exp.Literal) and node.this.this == "2") or node.expression is None:
                raise Unsupported(node.sql())
            return self.strict([node.expression], lambda v: f"_log2({v[0]})")
        if isinstance(node, exp.Length):
            return self.strict([node.this], lambda v: f"len({v[0]})")
        if type(node) in _PARTS:
            return self.strict([node.this], lambda v: f"{v[0]}.{_PARTS[type(node)]}")
        if isinstance(node, exp.Left):
            return self.strict([node.this, node.expression], lambda v: f"{v[0]}[:{v[1]}]")
        if isinstance(node, exp.TimeToStr):
            fmt = node.args["format"]
            if not isinstance(fmt, exp.Literal) or not fmt.is_string:
                raise Unsupported(node.sql())
            pattern = _strftime_format(fmt.this)  # refuses a format it cannot write now, not per row
            return self.strict([node.this], lambda v: f"{pattern!r}.format({v[0]})")
        if isinstance(node, exp.JarowinklerSimilarity):
            return self.strict([node.this, node.expression], lambda v: f"_jaro_winkler({v[0]}, {v[1]})")
        if isinstance(node, exp.Levenshtein) and not any(node.args.get(k) for k in node.args if k not in ("this", "expression")):
            return self.strict([node.this, node.expression], lambda v: f"_levenshtein({v[0]}, {v[1]})")
        if isinstance(node, exp.Anonymous) and str(node.this).lower() in _FUNCTIONS:
            name = _FUNCTIONS[str(node.this).lower()]
            return self.strict(list(node.expressions), lambda v: f"{name}({', '.join(v)})")
        return None


def _greatest(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


_NAMESPACE: dict[str, Any] = {
    "_pow": math.pow,
    "_log2": math.log2,
    "_greatest": _greatest,
    "_jaro_winkler": _jaro_winkler,
    "_damerau_levenshtein": _damerau_levenshtein,
    "_levenshtein": _levenshtein,
    "_list_intersect": _list_intersect,
}


def _define(source: str, name: str) -> Callable[..., Any]:
    namespace = dict(_NAMESPACE)
    exec(compile(source, f"<rowwise {name}>", "exec"), namespace)  # source written above from parsed SQL, not from input
    fn: Callable[..., Any] = namespace[name]
    return fn


def compile_expression(node: exp.Expression) -> Fn:
    """A function of a row (column name -> value) giving the value of ``node``."""
    body = _Writer(lambda key: f"row[{key!r}]").write(node)
    return _define(f"def _expression(row):\n    return {body}\n", "_expression")


def _projections(select: exp.Select) -> list[tuple[str, exp.Expression]]:
    out: list[tuple[str, exp.Expression]] = []
    for projection in select.expressions:
        if isinstance(projection, exp.Alias):
            out.append((projection.alias, projection.this))
        elif isinstance(projection, exp.Column):
            out.append((projection.name, projection))
        else:
            raise Unsupported(f"projection {projection.sql()[:80]}")
    return out


class Scorer:
    """:func:`pipelines.matching.scoring.score_sql` as Python: ``score(rows)`` gives, for rows
    with the columns of :func:`pipelines.matching.scoring.pairs_table`, the statement's rows.
    Its steps (the CTEs, then the final SELECT) become one function whose locals hold
    each step's columns."""

    def __init__(self, sql: str):
        tree = sqlglot.parse_one(sql, read="duckdb")
        if not isinstance(tree, exp.Select):
            raise Unsupported("not a SELECT")
        with_ = tree.args.get("with_") or tree.args.get("with")
        selects = [*(cte.this for cte in (with_.expressions if with_ else [])), tree]
        for select in selects:
            if not isinstance(select, exp.Select) or select.args.get("where") is not None or select.args.get("joins"):
                raise Unsupported("a step that is not a plain SELECT")
        lines = ["def _score(row):"]
        names: dict[str, str] = {}  # the previous step's columns -> locals
        for step, select in enumerate(selects):
            previous = names

            def column(key: str, previous: dict[str, str] = previous) -> str:
                return previous[key] if previous else f"row[{key!r}]"

            writer = _Writer(column)
            names = {}
            for i, (name, node) in enumerate(_projections(select)):
                if step and isinstance(node, exp.Column) and not node.table and node.name in previous:
                    names[name] = previous[node.name]  # passed through
                    continue
                local = f"_s{step}_{i}"
                lines.append(f"    {local} = {writer.write(node)}")
                names[name] = local
        lines.append("    return {" + ", ".join(f"{name!r}: {local}" for name, local in names.items()) + "}")
        self._score = _define("\n".join(lines) + "\n", "_score")
        self.columns = list(names)

    def score(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        return [self._score(row) for row in rows]


@lru_cache(maxsize=8)
def scorer(sql: str) -> Scorer | None:
    """The compiled scoring statement, or None when it uses something not implemented here."""
    try:
        return Scorer(sql)
    except Unsupported:
        return None


@lru_cache(maxsize=8)
def condition(sql: str) -> Fn | None:
    """A boolean SQL condition over aliases ``l`` and ``r`` (the veto), as a function of
    a row holding ``<column>_l`` and ``<column>_r``; None when not implemented here."""
    try:
        return compile_expression(cast(exp.Expression, sqlglot.parse_one(sql, read="duckdb")))
    except Unsupported:
        return None


def pair_id(key_l: str, key_r: str) -> str:
    """The pair id SQL writes as ``md5(record_key_l || '|' || record_key_r)[:16]``."""
    return hashlib.md5(f"{key_l}|{key_r}".encode()).hexdigest()[:16]
