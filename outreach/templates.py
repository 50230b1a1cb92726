"""Email templates: files with YAML front matter over a Jinja2 body, rendered in a sandbox.

Reading, checking and rendering are pure; `sync_templates` stores the files of a folder as
versions in the `templates` table, and `latest_template` / `list_templates` read them back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.lexer import TokenStream
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum, missing
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import Connection, Engine, Row, RowMapping, func, select

from store.clock import utcnow
from store.schema import templates

# --- Limits ----------------------------------------------------------------------------------
# A template is anyone's text, compiled at every start and run once per recipient: each limit
# keeps one hostile or mistaken file from hanging `templates sync`, `serve` or a send.

# A template file; compiling takes time in proportion (nothing is evaluated while compiling),
# and Gmail clips an email over 102 KB anyway.
MAX_FILE_BYTES = 100_000
# Uses of `*alias` in a front matter: nested aliases expand a few lines into gigabytes.
MAX_YAML_ALIASES = 20
# Checking (compiling) one template: its subject and body.
MAX_COMPILE_SECONDS = 2.0
# One recipient's email (subject, body and text part); checked at every call, attribute,
# operator, loop turn and output chunk, so a loop cannot run on.
MAX_RENDER_SECONDS = 1.0
# One rendered part, counted as it streams; also any string or list a template builds, so
# `'x' * 10**10` is refused before it is made.
MAX_OUTPUT_CHARS = 1_000_000
# Numbers in one range(); nested loops multiply, and the render time stops them.
MAX_RANGE = 10_000
# An integer made by `**` or `*`: 9**(9**9) has 2.8 billion bits and takes minutes.
MAX_INT_BITS = 4_096

# --- Files -----------------------------------------------------------------------------------


class TemplateFileError(Exception):
    """A template file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class TemplateFile:
    key: str  # the file name without its extension
    subject: str
    body: str
    format: str  # "html" or "markdown"
    description: str = ""
    track_opens: bool = True
    track_clicks: bool = True


def load_template(path: Path) -> TemplateFile:
    return parse_template(path, _decode(path, path.read_bytes()))


def parse_template(path: Path, text: str) -> TemplateFile:
    """The template in `text`, read from `path` (whose name gives the key and the format)."""
    if not text.startswith("---\n"):
        raise TemplateFileError(f"{path}: no front matter (start the file with a line '---')")
    header, separator, body = text[4:].partition("\n---\n")
    if not separator:
        raise TemplateFileError(f"{path}: the front matter is not closed by a line '---'")
    try:
        meta = yaml.load(header, Loader=_FrontMatterLoader) or {}
    except _TooManyAliases:
        raise TemplateFileError(
            f"{path}: the front matter uses more than {MAX_YAML_ALIASES} aliases (`*name`): "
            "write the values out"
        ) from None
    except yaml.YAMLError as exc:
        raise TemplateFileError(f"{path}: the front matter is not valid YAML ({exc})") from None
    except RecursionError:
        raise TemplateFileError(f"{path}: the front matter is nested too deeply") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("subject"), str):
        raise TemplateFileError(f"{path}: the front matter needs a 'subject: …' line")
    track = meta.get("track") or {}
    return TemplateFile(
        key=path.stem,
        subject=meta["subject"],
        body=body.lstrip("\n"),
        format="html" if path.suffix.lower() in (".html", ".htm") else "markdown",
        description=str(meta.get("description", "")),
        track_opens=bool(track.get("opens", True)),
        track_clicks=bool(track.get("clicks", True)),
    )


class _TooManyAliases(yaml.YAMLError):
    pass


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader with a budget of alias uses: each can double what the next one expands."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise _TooManyAliases
        return super().compose_node(parent, index)


def _decode(path: Path, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise TemplateFileError(
            f"{path}: {len(data):,} bytes, over the limit of {MAX_FILE_BYTES:,} for a template"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemplateFileError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}): save it as UTF-8"
        ) from None
    # Any line ending becomes "\n", as Path.read_text() does, so Windows files work too.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Plain text ------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "title"):
            self._skip += 1
        elif tag == "a":
            self._href = dict(attrs).get("href")
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "title"):
            self._skip -= 1
        elif tag == "a" and self._href:
            if self._href.startswith(("http://", "https://")):
                self.parts.append(f" ({self._href})")
            self._href = None
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            # Runs of whitespace become one space, also at the edges next to a tag.
            words = " ".join(data.split())
            self.parts.append(
                (" " if data[:1].isspace() else "") + words + (" " if data[-1:].isspace() else "")
            )


def html_to_text(html: str) -> str:
    """A plain-text part for an HTML email: paragraphs kept, links written out."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


# --- Rendering -------------------------------------------------------------------------------

CONTEXT_NAMES = ("enduser", "company", "sender", "campaign")
Part = Literal["subject", "body"]


class RenderError(Exception):
    """A template that cannot be rendered: the message names it, where, why, and for whom."""

    def __init__(
        self, key: str, part: Part, line: int | None, problem: str, recipient: str | None = None
    ) -> None:
        self.key, self.part, self.line, self.problem = key, part, line, problem
        self.recipient = recipient
        message = f"template {key!r}, {self.where}: {problem}"
        if recipient is not None:
            message += f" (rendering for {recipient})"
        super().__init__(message)

    @property
    def where(self) -> str:
        """`body line 4`, or the part alone when there is no line to name."""
        return f"body line {self.line}" if self.part == "body" and self.line else self.part


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class _Data(dict[str, Any]):
    """A mapping of the render context that knows its place (`company`, `enduser.address`)."""

    __slots__ = ("_path",)  # underscored, so the sandbox keeps templates from reading it
    _path: str


class _List(list[Any]):
    __slots__ = ("_path",)
    _path: str


def _child(path: str, name: Any) -> str:
    return (
        f"{path}.{name}" if isinstance(name, str) and name.isidentifier() else f"{path}[{name!r}]"
    )


def _data(value: Any, path: str) -> Any:
    """`value` with every mapping and list in it knowing its path, for error messages."""
    if isinstance(value, Mapping):
        mapping = _Data({key: _data(item, _child(path, key)) for key, item in value.items()})
        mapping._path = path
        return mapping
    if isinstance(value, list | tuple):
        items = _List(_data(item, f"{path}[{index}]") for index, item in enumerate(value))
        items._path = path
        return items
    return value


class _Undefined(StrictUndefined):
    """StrictUndefined that names what is missing as the data calls it: `company.plan`."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name, obj = self._undefined_name, self._undefined_obj
        path = _child(obj._path, name) if isinstance(obj, _Data | _List) else None
        if self._undefined_exception is SecurityError:
            return f"access to {path} is unsafe" if path else str(self._undefined_hint)
        if self._undefined_hint:
            return self._undefined_hint
        if obj is missing:
            return f"{name} is not defined"
        return f"{path} is not defined" if path else super()._undefined_message


class _MarkdownSource(str):
    """Markdown the template itself made (a macro, a `{% set %}` block): not escaped again."""

    __slots__ = ()


class TemplateLimitError(TemplateError):
    """A template went over one of the limits at the top of this module; the message says which."""


class _Deadline(threading.local):
    at = math.inf
    problem = ""


_deadline = _Deadline()
_T = TypeVar("_T")
_clock: Callable[[], float] = time.monotonic


@contextmanager
def _time_limit(seconds: float, what: str) -> Iterator[None]:
    """Within this, `_tick()` refuses to go on once `seconds` have passed."""
    outer = _deadline.at, _deadline.problem
    _deadline.at = _clock() + seconds
    _deadline.problem = f"{what} took longer than the limit of {seconds:g} s"
    try:
        yield
    finally:
        _deadline.at, _deadline.problem = outer


def _tick() -> None:
    if _clock() > _deadline.at:
        raise TemplateLimitError(_deadline.problem)


def _size(value: Any) -> int:
    """What a value weighs: its characters, or its items and the characters of their strings."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(item) for item in value if isinstance(item, str))
    return 0


def _check_size(size: int) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(
            f"that would make {size:,} characters or items, over the limit of {MAX_OUTPUT_CHARS:,}"
        )


def _checked(value: Any) -> Any:
    _check_size(_size(value))
    return value


def _check_widths(values: Iterable[Any]) -> None:
    """Refuses a width or a count (`center(…)`, `'x'.ljust(…)`) that would make a huge value."""
    for value in values:
        if type(value) is int:
            _check_size(value)


_PRINTF_SPEC = re.compile(r"%[^a-zA-Z%]*")


def _check_printf(form: Any) -> None:
    """`'%099999999d' % 1` makes a 100 MB string from a short one: widths are bounded too."""
    if isinstance(form, str):
        for spec in _PRINTF_SPEC.findall(form):
            if "*" in spec:
                raise TemplateLimitError("a '*' width in a '%' format is not allowed")
            _check_widths([int(digits) for digits in re.findall(r"\d+", spec)])


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses `**`, `*`, `+` and `%` whose result would be over a limit, before computing it."""
    numbers = type(left) in (int, bool) and type(right) in (int, bool)
    if operator == "**" and numbers and abs(left) > 1 and right > 0:
        bits = int(right * math.log2(abs(left)))
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(
                f"{left} ** {right} has about {bits:,} bits, over the limit of {MAX_INT_BITS:,}"
            )
    elif operator == "*" and numbers:
        bits = abs(left).bit_length() + abs(right).bit_length()
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(
                f"a product of about {bits:,} bits, over the limit of {MAX_INT_BITS:,}"
            )
    elif operator == "*":
        count, sequence = (left, right) if isinstance(left, int) else (right, left)
        if isinstance(count, int):
            _check_size(_size(sequence) * count)
    elif operator == "+":
        _check_size(_size(left) + _size(right))
    elif operator == "%":
        _check_printf(left)


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        too_many = len(numbers) > MAX_RANGE
    except OverflowError:  # more than sys.maxsize
        too_many = True
    if too_many:
        raise TemplateLimitError(f"range() of more than the limit of {MAX_RANGE:,} numbers")
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n * max > MAX_RANGE:
        raise TemplateLimitError(f"lipsum() of more than the limit of {MAX_RANGE:,} words")
    return generate_lorem_ipsum(n, html, min, max)


class _Namespace(Namespace):
    """`namespace()`, whose values are weighed: `ns.s = ns.s ~ ns.s` in a loop doubles."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _checked(value))


def _guard_loop(iterable: Iterable[_T]) -> Iterator[_T]:
    for item in iterable:
        _tick()
        yield item


_LOOP_GUARD = "_guard_loop"  # the filter every `{% for %}` goes through
_WIDTH_FILTERS = frozenset({"center", "indent", "batch", "slice"})


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    first = 2 if hasattr(function, "jinja_pass_arg") else 1  # after the context and the value

    @functools.wraps(function)  # keeps `jinja_pass_arg`
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if name in _WIDTH_FILTERS:
            _check_widths([*args[first:], *kwargs.values()])
        elif name == "format":
            _check_printf(args[first - 1])
        return _checked(function(*args, **kwargs))

    return bounded


class _CodeGenerator(CodeGenerator):
    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Jinja folds constant expressions while compiling, `{{ 9**(9**9) }}` too: only plain
        # text is folded here, everything else runs in the sandbox, under its limits.
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja's, with the parts weighed before they are joined.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"{join}(environment.weighed((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(")))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with the limits: nothing runs while compiling, and every call, attribute,
    operator and loop turn checks the time, and what it makes, against the limits."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, **options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_GUARD] = _guard_loop
        self.globals.update(range=_range, lipsum=_lipsum, namespace=_Namespace)

    def _tokenize(
        self, source: str, name: str | None, filename: str | None = None, state: str | None = None
    ) -> TokenStream:
        # Parsing a long template takes seconds: the compile time is checked at every token.
        stream = super()._tokenize(source, name, filename, state)
        return TokenStream(_guard_loop(stream), stream.name, stream.filename)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_GUARD, [], [], None, None, lineno=loop.lineno, environment=self
            )
        return tree

    @staticmethod
    def weighed(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        _tick()
        _check_size(sum(len(str(part)) for part in parts))
        return parts

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if isinstance(getattr(obj, "__self__", None), str):  # 'x'.ljust(10**9)
            _check_widths([*args, *kwargs.values()])
        return _checked(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)


class _MarkdownEnvironment(_Sandbox):
    # Jinja joins the output of macros and blocks with `environment.concat`.
    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        return _MarkdownSource("".join(parts))


# Every ASCII punctuation character can be backslash-escaped in CommonMark, and only those.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_WHITESPACE = re.compile(r"\s+")


def escape_markdown(value: str) -> str:
    """Markdown that renders as exactly `value`: punctuation escaped, whitespace runs collapsed.

    Collapsing changes nothing HTML shows, and a value can then neither end a paragraph nor
    start an indented code block; `<` is escaped too, so no autolink, and markdown-it writes it
    as `&lt;`.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _WHITESPACE.sub(" ", value))


def _markdown_literal(value: Any) -> Any:
    """Jinja's finalize for Markdown bodies: an interpolated value is text, never Markdown."""
    if isinstance(value, Markup | _MarkdownSource):  # `|safe`, or the template's own output
        return value
    return escape_markdown(str(value))


# Block tags on a line of their own leave no blank line behind: in Markdown that would end a
# paragraph or a list.
_OPTIONS: dict[str, Any] = {"undefined": _Undefined, "trim_blocks": True, "lstrip_blocks": True}
_HTML = _Sandbox(autoescape=True, **_OPTIONS)
_PLAIN = _Sandbox(autoescape=False, **_OPTIONS)
_MARKDOWN = _MarkdownEnvironment(autoescape=False, finalize=_markdown_literal, **_OPTIONS)
_MARKDOWN_IT = MarkdownIt("commonmark", {"html": False})  # raw HTML in Markdown is escaped
_TEMPLATE_FILENAME = "<template>"  # what Jinja's rewritten tracebacks call a template's code
# What a template can raise while rendering: its own mistakes, not bugs of ours.
_RENDER_ERRORS = (
    TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
    MemoryError,
)


@dataclass(frozen=True)
class _Compiled:
    template: TemplateFile
    subject: Template
    body: Template
    markdown: bool  # the body is Markdown, made into HTML after rendering


def check(template: TemplateFile) -> None:
    """Raises RenderError for a syntax error or an unknown name, before anything is rendered."""
    _compile(template)


@lru_cache(maxsize=64)
def _compile(template: TemplateFile) -> _Compiled:
    if template.format not in ("html", "markdown"):
        raise ValueError(f"template {template.key!r}: unknown format {template.format!r}")
    markdown = template.format == "markdown"
    with _time_limit(MAX_COMPILE_SECONDS, "checking the template"):
        return _Compiled(
            template=template,
            subject=_compile_part(template, "subject", _PLAIN),
            body=_compile_part(template, "body", _MARKDOWN if markdown else _HTML),
            markdown=markdown,
        )


def _compile_part(template: TemplateFile, part: Part, environment: _Sandbox) -> Template:
    source = template.subject if part == "subject" else template.body
    try:
        _check_size(len(source))
        tree = environment.parse(source)
        _tick()
        compiled = environment.from_string(tree)
        _tick()
    except TemplateSyntaxError as exc:
        problem = f"syntax error: {exc.message or exc}"
        raise RenderError(template.key, part, exc.lineno, problem) from exc
    except (TemplateLimitError, RecursionError) as exc:
        raise RenderError(template.key, part, None, _problem(exc)) from exc
    known = {*CONTEXT_NAMES, *environment.globals}
    unknown = meta.find_undeclared_variables(tree) - known
    if unknown:
        uses = [n for n in tree.find_all(nodes.Name) if n.ctx == "load" and n.name in unknown]
        first = min(uses, key=lambda n: n.lineno)
        problem = (
            f"unknown name {first.name!r}: a template can use "
            f"{', '.join(CONTEXT_NAMES[:-1])} and {CONTEXT_NAMES[-1]}"
        )
        raise RenderError(template.key, part, first.lineno, problem)
    return compiled


def render(template: TemplateFile, context: Mapping[str, Any]) -> Rendered:
    return _render(_compile(template), context, recipient=None)


def render_all(
    template: TemplateFile, recipients: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[Rendered]:
    """Every recipient's email, or the first error, naming the recipient (their email)."""
    compiled = _compile(template)
    return [_render(compiled, context, recipient) for recipient, context in recipients]


_EMPTY: Mapping[str, Any] = {name: {} for name in CONTEXT_NAMES}


def _render(compiled: _Compiled, context: Mapping[str, Any], recipient: str | None) -> Rendered:
    # A name left out is an empty mapping, so `company.name` says what is missing.
    data = {name: _data(value, name) for name, value in {**_EMPTY, **context}.items()}
    with _time_limit(MAX_RENDER_SECONDS, "rendering"):
        subject = " ".join(_run(compiled, "subject", compiled.subject, data, recipient).split())
        body = _run(compiled, "body", compiled.body, data, recipient)
        if not compiled.markdown:
            return Rendered(subject, body, html_to_text(body))
        html = f"<!doctype html>\n<html><body>\n{_MARKDOWN_IT.render(body)}</body></html>\n"
        # The text part is read, not parsed: made from the HTML, with each link written out
        # (so that instrumentation tracks it), not the raw Markdown.
        return Rendered(subject, html, html_to_text(html))


def _run(
    compiled: _Compiled,
    part: Part,
    template: Template,
    data: Mapping[str, Any],
    recipient: str | None,
) -> str:
    size, chunks = 0, []
    try:
        for chunk in template.generate(data):  # weighed as it streams
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(
                    f"over {MAX_OUTPUT_CHARS:,} characters of output, the limit for a {part}"
                )
            _tick()
            chunks.append(chunk)
        return "".join(chunks)
    except _RENDER_ERRORS as exc:
        key = compiled.template.key
        raise RenderError(key, part, _template_line(exc), _problem(exc), recipient) from exc


def _template_line(exc: BaseException) -> int | None:
    """The template line of the innermost template frame (Jinja rewrites the traceback)."""
    line, frame = None, exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


def _problem(exc: Exception) -> str:
    if isinstance(exc, TemplateLimitError):
        return f"refused: {exc.message}"
    if isinstance(exc, RecursionError):
        return "refused: nested or recursing too deeply"
    if isinstance(exc, MemoryError):
        return "refused: the template needs more memory than there is"
    if isinstance(exc, SecurityError):
        return f"refused, the template tried something unsafe: {str(exc).rstrip('.')}"
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


# --- The store -------------------------------------------------------------------------------

TEMPLATE_SUFFIXES = frozenset({".md", ".markdown", ".html", ".htm"})
MAX_KEY = 100  # templates.key is String(100)
_KEY = re.compile(r"\w[\w.-]*")  # a word in a slash command: `/beacon send <key> to …`


class StoredTemplate(NamedTuple):
    id: int
    version: int
    template: TemplateFile


@dataclass(frozen=True)
class BadFile:
    name: str
    reason: str


@dataclass(frozen=True)
class FoundTemplate:
    name: str  # the file name
    template: TemplateFile
    checksum: str  # sha256 of the file's bytes


@dataclass
class SyncReport:
    new: list[str] = field(default_factory=list)
    changed: list[tuple[str, int]] = field(default_factory=list)  # (key, its new version)
    unchanged: list[str] = field(default_factory=list)
    bad_files: list[BadFile] = field(default_factory=list)

    def summary(self) -> str:
        bad = len(self.bad_files)
        changed = [f"{key} v{version}" for key, version in self.changed]
        lines = [
            f"templates: {_counted('new', self.new)}, {_counted('changed', changed)}, "
            f"{len(self.unchanged)} unchanged, {bad} bad {'file' if bad == 1 else 'files'} skipped"
        ]
        lines += [f"{file.name}: {file.reason}" for file in self.bad_files]
        return "\n".join(lines)


def _counted(label: str, names: Sequence[str]) -> str:
    return f"{len(names)} {label}" + (f" ({', '.join(names)})" if names else "")


def read_folder(folder: Path) -> tuple[list[FoundTemplate], list[BadFile]]:
    """The usable template files in `folder` (checked), and the others with the reason."""
    if not folder.is_dir():
        raise TemplateFileError(f"{folder}: no such folder")
    paths = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in TEMPLATE_SUFFIXES
        and not path.name.startswith(".")  # editor and macOS litter
        and path.is_file()
    )
    found: list[FoundTemplate] = []
    bad: list[BadFile] = []
    for path in paths:
        data = path.read_bytes()
        try:
            template = parse_template(path, _decode(path, data))
            if not _KEY.fullmatch(template.key) or len(template.key) > MAX_KEY:
                raise TemplateFileError(
                    f"{path}: the file name gives the key {template.key!r}; rename the file: "
                    f"letters, digits, '-', '_' and '.', at most {MAX_KEY} characters"
                )
            check(template)
        except TemplateFileError as exc:
            bad.append(BadFile(path.name, str(exc).removeprefix(f"{path}: ")))
        except RenderError as exc:
            bad.append(BadFile(path.name, f"{exc.where}: {exc.problem}"))
        else:
            found.append(FoundTemplate(path.name, template, hashlib.sha256(data).hexdigest()))
    by_key: dict[str, list[FoundTemplate]] = {}
    for item in found:
        by_key.setdefault(item.template.key, []).append(item)
    for key, same in by_key.items():
        if len(same) > 1:
            names = ", ".join(item.name for item in same)
            reason = f"{names} give the same key {key!r}: keep one of them"
            bad += [BadFile(item.name, reason) for item in same]
    bad_names = {file.name for file in bad}
    return [f for f in found if f.name not in bad_names], sorted(bad, key=lambda f: f.name)


def plan_sync(
    found: Sequence[FoundTemplate], newest: Mapping[str, tuple[int, str]]
) -> tuple[SyncReport, list[tuple[FoundTemplate, int]]]:
    """The report and the (template, version) rows to store.

    `newest`: the stored newest version and checksum of each key.
    """
    report = SyncReport()
    rows: list[tuple[FoundTemplate, int]] = []
    for item in found:
        key = item.template.key
        if key not in newest:
            report.new.append(key)
            rows.append((item, 1))
        elif newest[key][1] == item.checksum:
            report.unchanged.append(key)
        else:
            version = newest[key][0] + 1
            report.changed.append((key, version))
            rows.append((item, version))
    return report, rows


def sync_templates(engine: Engine, folder: Path, now: datetime | None = None) -> SyncReport:
    found, bad = read_folder(folder)
    now = now or utcnow()
    with engine.begin() as connection:
        newest = {row.key: (row.version, row.checksum) for row in _newest_rows(connection)}
        report, rows = plan_sync(found, newest)
        if rows:
            connection.execute(
                templates.insert(),
                [
                    {
                        **dataclasses.asdict(item.template),
                        "version": version,
                        "checksum": item.checksum,
                        "created_at": now,
                    }
                    for item, version in rows
                ],
            )
    report.bad_files = bad
    return report


def latest_template(connection: Connection, key: str) -> StoredTemplate | None:
    query = select(templates).where(templates.c.key == key)
    row = connection.execute(query.order_by(templates.c.version.desc()).limit(1)).first()
    return None if row is None else _stored(row._mapping)


def list_templates(connection: Connection) -> list[StoredTemplate]:
    """The newest version of each template, by key."""
    return [_stored(row._mapping) for row in _newest_rows(connection)]


def _newest_rows(connection: Connection) -> Sequence[Row[Any]]:
    t = templates.c
    newest = select(t.key, func.max(t.version).label("version")).group_by(t.key).subquery()
    query = select(templates).join(
        newest, (t.key == newest.c.key) & (t.version == newest.c.version)
    )
    return connection.execute(query.order_by(t.key)).all()


def _stored(row: RowMapping) -> StoredTemplate:
    fields = {f.name: row[f.name] for f in dataclasses.fields(TemplateFile)}
    return StoredTemplate(row["id"], row["version"], TemplateFile(**fields))
