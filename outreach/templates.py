"""Email templates as files: a YAML front matter (subject, description, track) over a body."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import yaml


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
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise TemplateFileError(f"{path}: no front matter (start the file with a line '---')")
    header, separator, body = text[4:].partition("\n---\n")
    if not separator:
        raise TemplateFileError(f"{path}: the front matter is not closed by a line '---'")
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise TemplateFileError(f"{path}: the front matter is not valid YAML ({exc})") from None
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
