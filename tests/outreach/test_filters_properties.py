"""Property-based tests of the filter parser: any text parses or is an AudienceError, quickly,
and every valid syntax tree renders to text that parses back to itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.filters import (
    MAX_INTEGER,
    And,
    AudienceError,
    Compare,
    Contains,
    Expr,
    Field,
    Has,
    In,
    IsEmpty,
    Not,
    Or,
    parse,
    render,
)

BOUNDED = settings(max_examples=150, deadline=500)

TOKENS = [
    *("(", ")", ",", "not", "and", "or", "has", "contains", "in", "is", "empty", "true"),
    *("=", "!=", "<", ">=", "==", "~", "seats", "company.region", "role", "company.", "a.b.c"),
    *('"x"', "'y", "\u201cz\u201d", "1", "-2.5", "1e999", "1" + "0" * 40, "5x", "@", "\\"),
]


def parses_or_explains(text: str) -> None:
    try:
        parse(text)
    except AudienceError as error:
        assert 0 <= error.position <= len(text)
        assert error.message


@BOUNDED
@given(st.text(max_size=300))
def test_any_text_parses_or_is_an_audience_error(text: str) -> None:
    parses_or_explains(text)


@BOUNDED
@given(st.lists(st.sampled_from(TOKENS), max_size=400))
def test_any_sequence_of_tokens_parses_or_is_an_audience_error(tokens: list[str]) -> None:
    parses_or_explains(" ".join(tokens))


@BOUNDED
@given(st.integers(0, 1500), st.integers(0, 1500), st.sampled_from(["(", "not ", "not ("]))
def test_any_nesting_parses_or_is_an_audience_error(opened: int, closed: int, opener: str) -> None:
    parses_or_explains(opener * opened + "seats > 1" + ")" * closed)


# --- Valid trees -----------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}", fullmatch=True)
ATTRIBUTES = st.builds(lambda name: Field("enduser", name, is_attribute=True), NAMES) | st.builds(
    lambda name: Field("company", name, is_attribute=True),
    NAMES.filter(lambda name: name.lower() not in ("name", "domain")),
)
COLUMNS = st.sampled_from(
    [Field("enduser", n) for n in ("email", "name", "role")]
    + [Field("company", n) for n in ("name", "domain")]
)
TEXT = st.text(max_size=20)
NUMBERS = st.integers(-MAX_INTEGER, MAX_INTEGER) | st.floats(allow_nan=False, allow_infinity=False)
SCALARS = TEXT | NUMBERS | st.booleans()


def _compare(field: Field, op: str, value: object) -> Compare:
    return Compare(field, op, value)  # type: ignore[arg-type]


LEAVES = st.one_of(
    st.builds(_compare, COLUMNS, st.sampled_from(["=", "!=", "<", ">", "<=", ">="]), TEXT),
    st.builds(
        _compare, ATTRIBUTES, st.sampled_from(["=", "!=", "<", ">", "<=", ">="]), TEXT | NUMBERS
    ),
    st.builds(_compare, ATTRIBUTES, st.sampled_from(["=", "!="]), st.booleans()),
    st.builds(Has, ATTRIBUTES, TEXT | NUMBERS),
    st.builds(Contains, COLUMNS | ATTRIBUTES, TEXT),
    st.builds(In, COLUMNS, st.lists(TEXT, min_size=1, max_size=4).map(tuple)),
    st.builds(In, ATTRIBUTES, st.lists(SCALARS, min_size=1, max_size=4).map(tuple)),
    st.builds(IsEmpty, COLUMNS | ATTRIBUTES, st.booleans()),
)


def _branches(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    operands = st.lists(children, min_size=2, max_size=4)
    return st.one_of(
        st.builds(Not, children),
        # as parse builds them: an And never directly inside an And, nor an Or in an Or
        operands.map(lambda ops: And(tuple(o for o in ops if not isinstance(o, And)))),
        operands.map(lambda ops: Or(tuple(o for o in ops if not isinstance(o, Or)))),
    )


def _flat(expr: Expr) -> bool:
    if isinstance(expr, And | Or):
        return len(expr.operands) >= 2 and all(
            not isinstance(o, type(expr)) and _flat(o) for o in expr.operands
        )
    return _flat(expr.operand) if isinstance(expr, Not) else True


TREES = st.recursive(LEAVES, _branches, max_leaves=12).filter(_flat)


@BOUNDED
@given(TREES)
def test_a_rendered_tree_parses_back_to_itself(expr: Expr) -> None:
    assert parse(render(expr)) == expr
