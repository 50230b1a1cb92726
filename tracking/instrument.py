"""Instrumentation of an outgoing email: tracked links, the open pixel and the honeypot link.

Pure: it rewrites the HTML and text parts and says which `links` rows to store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from itertools import accumulate, groupby
from typing import NamedTuple
from urllib.parse import quote, unquote_plus

from tracking.tokens import TokenSigner

_PLACEHOLDERS = ("campaign", "template")  # "{campaign}" in a UTM value is utm_context["campaign"]
_LINK_TAGS = ("a", "area")
_WEB_SCHEMES = ("http", "https")
_URL_OPENERS = "<([\"'"
_URL_TRAILERS = ".,;:!?)]>'\""


@dataclass(frozen=True)
class TrackingFlags:
    opens: bool
    clicks: bool


@dataclass(frozen=True)
class Link:
    idx: int  # 0 is always the hidden honeypot; real links are numbered 1, 2, 3…
    url: str  # final destination (with UTM parameters added); empty for the honeypot
    honeypot: bool = False


@dataclass(frozen=True)
class Instrumented:
    html: str
    text: str
    links: list[Link]  # rows the caller stores in the `links` table (email_id, idx, url, honeypot)


def instrument(
    html: str,
    text: str,
    *,
    email_id: int,
    flags: TrackingFlags,
    signer: TokenSigner,
    base_url: str,
    utm: Mapping[str, str] | None = None,
    utm_context: Mapping[str, str] | None = None,
    honeypot: bool = True,
) -> Instrumented:
    if not (flags.opens or flags.clicks):
        return Instrumented(html, text, [])
    base = base_url.removesuffix("/")

    def click_url(idx: int) -> str:
        return f"{base}/t/c/{signer.click_token(email_id, idx)}"

    markup = _scan(html)
    links: list[Link] = []
    edits: list[_Edit] = []
    if honeypot:
        at = 0 if markup.body_open is None else markup.body_open
        edits.append(_Edit(at, at, _honeypot_tag(click_url(0))))
        links.append(Link(idx=0, url="", honeypot=True))
    if flags.clicks:
        tracker = _Tracker(_fill_utm(utm or {}, utm_context or {}), click_url)
        # Indexes follow first appearance, HTML before text: the order of these two lines matters.
        edits.extend(_href_edits(markup.link_tags, tracker.track))
        text = _apply(text, _text_edits(text, tracker.track))
        links.extend(tracker.links)
    if flags.opens:
        at = len(html) if markup.body_close is None else markup.body_close
        edits.append(_Edit(at, at, _pixel_tag(f"{base}/t/o/{signer.open_token(email_id)}.gif")))
    return Instrumented(_apply(html, edits), text, links)


def add_utm(url: str, utm: Mapping[str, str]) -> str:
    """`url` with the parameters of `utm` it lacks appended; what is there stays as written."""
    base, hash_mark, fragment = url.partition("#")
    _, _, query = base.partition("?")
    present = {unquote_plus(pair.partition("=")[0]) for pair in query.split("&")}
    added = "&".join(
        f"{quote(key)}={quote(value)}" for key, value in utm.items() if key not in present
    )
    if not added:
        return url
    joint = "?" if "?" not in base else "" if base.endswith(("?", "&")) else "&"
    return f"{base}{joint}{added}{hash_mark}{fragment}"


class _Edit(NamedTuple):
    start: int
    end: int
    text: str


def _apply(source: str, edits: Iterable[_Edit]) -> str:
    """`source` with each span replaced; insertions at a span's start go before the span."""
    parts: list[str] = []
    done = 0
    for edit in sorted(edits, key=lambda edit: (edit.start, edit.end)):
        parts += [source[done : edit.start], edit.text]
        done = edit.end
    parts.append(source[done:])
    return "".join(parts)


class _Tracker:
    """Numbers distinct destinations 1, 2, 3… in order of first appearance."""

    def __init__(self, utm: Mapping[str, str], click_url: Callable[[int], str]) -> None:
        self._utm = utm
        self._click_url = click_url
        self._indexes: dict[str, int] = {}

    def track(self, url: str) -> str:
        destination = add_utm(url, self._utm)
        return self._click_url(self._indexes.setdefault(destination, len(self._indexes) + 1))

    @property
    def links(self) -> list[Link]:
        return [Link(idx, url) for url, idx in self._indexes.items()]


def _fill_utm(utm: Mapping[str, str], context: Mapping[str, str]) -> dict[str, str]:
    filled = {key: _fill(value, context) for key, value in utm.items()}
    # An empty value says nothing to analytics; "utm_campaign=" on a one-off email is noise.
    return {key: value for key, value in filled.items() if value}


def _fill(value: str, context: Mapping[str, str]) -> str:
    # str.replace, not str.format: other braces in a configured value are kept as they are.
    for name in _PLACEHOLDERS:
        value = value.replace(f"{{{name}}}", context.get(name, ""))
    return value


def _is_web_url(url: str) -> bool:
    scheme, separator, rest = url.partition("://")
    return scheme.lower() in _WEB_SCHEMES and bool(separator) and bool(rest)


# HTML part


@dataclass(frozen=True)
class _Tag:
    start: int  # offset of "<" in the document
    source: str  # the start tag exactly as written


class _TagFinder(HTMLParser):
    """Where link tags and the body's edges are; comments, <script> and <style> hold none."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self._line_starts = [0, *accumulate(len(line) + 1 for line in document.split("\n"))]
        self.link_tags: list[_Tag] = []
        self.body_open: int | None = None  # just after the first <body …> start tag
        self.body_close: int | None = None  # at the last </body> end tag

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINK_TAGS:
            self.link_tags.append(_Tag(self._offset(), self._start_tag()))
        elif tag == "body" and self.body_open is None:
            self.body_open = self._offset() + len(self._start_tag())

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_close = self._offset()

    def _start_tag(self) -> str:
        return self.get_starttag_text() or ""

    def _offset(self) -> int:
        # getpos() counts lines by "\n" alone and columns in characters, as this does.
        line, column = self.getpos()
        return self._line_starts[line - 1] + column


def _scan(document: str) -> _TagFinder:
    finder = _TagFinder(document)
    finder.feed(document)
    finder.close()
    return finder


def _href_edits(tags: Iterable[_Tag], track: Callable[[str], str]) -> Iterator[_Edit]:
    for tag in tags:
        attributes = list(_attributes(tag.source))
        if any(a.name == "data-beacon" and (a.value or "").lower() == "off" for a in attributes):
            continue
        href = next((a for a in attributes if a.name == "href"), None)  # the first one counts
        if href is None or href.value is None:
            continue
        url = unescape(href.value).strip()
        if _is_web_url(url):
            quoted = f'"{_escape_attribute(track(url))}"'
            yield _Edit(tag.start + href.start, tag.start + href.end, quoted)


@dataclass(frozen=True)
class _Attribute:
    name: str  # lower case
    value: str | None  # as written (entities not decoded); None for a bare name like `download`
    start: int  # span of the value in the tag's source, quotes included
    end: int


def _attributes(tag: str) -> Iterator[_Attribute]:
    """The attributes of a start tag's source such as `<a class=x HREF = 'y'>`, in order."""
    at = _skip(tag, 1, _is_name_char)  # "<" and the tag name
    while True:
        at = _skip(tag, at, lambda char: char.isspace() or char == "/")
        if at >= len(tag) or tag[at] == ">":
            return
        name_end = _skip(tag, at + 1, _is_name_char)
        name = tag[at:name_end].lower()
        equals = _skip(tag, name_end, str.isspace)
        if not tag.startswith("=", equals):
            yield _Attribute(name, None, name_end, name_end)
            at = name_end
            continue
        start = _skip(tag, equals + 1, str.isspace)
        if tag[start : start + 1] in ("'", '"'):
            close = tag.find(tag[start], start + 1)
            if close < 0:
                return
            value, end = tag[start + 1 : close], close + 1
        else:
            end = _skip(tag, start, lambda char: not char.isspace() and char != ">")
            value = tag[start:end]
        yield _Attribute(name, value, start, end)
        at = end


def _is_name_char(char: str) -> bool:
    return not char.isspace() and char not in "/=>"


def _skip(text: str, at: int, wanted: Callable[[str], bool]) -> int:
    while at < len(text) and wanted(text[at]):
        at += 1
    return at


def _escape_attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def _honeypot_tag(href: str) -> str:
    return (
        f'<a href="{_escape_attribute(href)}" style="display:none!important;mso-hide:all"'
        ' aria-hidden="true" tabindex="-1"></a>'
    )


def _pixel_tag(src: str) -> str:
    return (
        f'<img src="{_escape_attribute(src)}" width="1" height="1" alt=""'
        ' style="display:block;width:1px;height:1px;border:0" />'
    )


# Text part


def _text_edits(text: str, track: Callable[[str], str]) -> Iterator[_Edit]:
    at = 0
    for _, chars in groupby(text, key=str.isspace):
        word = "".join(chars)
        start, end = _url_span(word)
        if _is_web_url(word[start:end]):
            yield _Edit(at + start, at + end, track(word[start:end]))
        at += len(word)


def _url_span(word: str) -> tuple[int, int]:
    """Where a URL in `word` would be, without wrapping like `<…>`, `(…)` or a final full stop."""
    start = _skip(word, 0, lambda char: char in _URL_OPENERS)
    end = len(word)
    while end > start and word[end - 1] in _URL_TRAILERS and not _closes_own_paren(word[start:end]):
        end -= 1
    return start, end


def _closes_own_paren(url: str) -> bool:
    # https://en.wikipedia.org/wiki/Mercury_(planet) keeps its ")"; "(see https://x.example)" not.
    return url.endswith(")") and url.count("(") >= url.count(")")
