from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tracking.instrument import Instrumented, Link, TrackingFlags, add_utm, instrument
from tracking.tokens import TokenKind, TokenSigner

SIGNER = TokenSigner(["k" * 32])
EMAIL_ID = 42
BASE = "https://t.example"
CLICK_PREFIX = f"{BASE}/t/c/"
TOKEN_LENGTH = len(SIGNER.click_token(EMAIL_ID, 0))
NONE = TrackingFlags(opens=False, clicks=False)
OPENS = TrackingFlags(opens=True, clicks=False)
CLICKS = TrackingFlags(opens=False, clicks=True)
BOTH = TrackingFlags(opens=True, clicks=True)
SLOT = "@"  # where a template takes an href value, a text URL, the pixel or the honeypot


def run(
    html: str,
    text: str = "",
    *,
    flags: TrackingFlags = CLICKS,
    honeypot: bool = False,
    utm: Mapping[str, str] | None = None,
    utm_context: Mapping[str, str] | None = None,
    base_url: str = BASE,
) -> Instrumented:
    return instrument(
        html,
        text,
        email_id=EMAIL_ID,
        flags=flags,
        signer=SIGNER,
        base_url=base_url,
        utm=utm,
        utm_context=utm_context,
        honeypot=honeypot,
    )


def fill(template: str, values: Sequence[str]) -> str:
    head, *rest = template.split(SLOT)
    return head + "".join(value + part for value, part in zip(values, rest, strict=True))


def click_idx(url: str) -> int:
    """The link index of a tracked URL, once its token is checked to be a click on EMAIL_ID."""
    assert url.startswith(CLICK_PREFIX)
    claims = SIGNER.verify(url.removeprefix(CLICK_PREFIX), TokenKind.CLICK)
    assert claims is not None
    assert claims.id == EMAIL_ID
    return claims.link_idx


def put_back(output: str, originals: Sequence[str], quote: str = "") -> tuple[str, list[int]]:
    """`output` with each tracked URL (and its `quote`s) replaced by an original, and their idx."""
    head, *pieces = output.split(quote + CLICK_PREFIX)
    restored, indexes = [head], []
    for original, piece in zip(originals, pieces, strict=True):
        token, after = piece[:TOKEN_LENGTH], piece[TOKEN_LENGTH:]
        assert after.startswith(quote)
        indexes.append(click_idx(CLICK_PREFIX + token))
        restored += [original, after.removeprefix(quote)]
    return "".join(restored), indexes


def pixel() -> str:
    token = SIGNER.open_token(EMAIL_ID)
    claims = SIGNER.verify(token, TokenKind.OPEN)
    assert claims is not None
    assert claims.id == EMAIL_ID
    return (
        f'<img src="{BASE}/t/o/{token}.gif" width="1" height="1" alt=""'
        ' style="display:block;width:1px;height:1px;border:0" />'
    )


def honeypot_link() -> str:
    href = f"{BASE}/t/c/{SIGNER.click_token(EMAIL_ID, 0)}"
    assert click_idx(href) == 0
    return (
        f'<a href="{href}" style="display:none!important;mso-hide:all"'
        ' aria-hidden="true" tabindex="-1"></a>'
    )


DOCUMENT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Hi</title>
<style>a{color:red} /* <a href="https://style.example/"> */</style></head>
<body class="main">
<p>Héllo ✓ — <a class="btn" href=@ title='x'>one</a>, <A HREF=@>two</A></p>
<!-- <a href="https://comment.example/"> -->
<!--[if mso]><a href="https://mso.example/">mso</a><![endif]-->
<script>var s = '<a href="https://script.example/">';</script>
<map><area shape="rect" coords="0,0,1,1" href=@ /></map>
</body></html>
"""


@pytest.mark.parametrize(
    ("template", "values", "destinations"),
    [
        (
            DOCUMENT,
            ['"https://a.example/one"', "'https://b.example/two'", "https://c.example/three"],
            ["https://a.example/one", "https://b.example/two", "https://c.example/three"],
        ),
        (
            'a\r\nb\r\n<a\r\n  data-x="1"\r\n  href = @\r\n>x</a>\n\n  <a href=@ />',
            ['"https://a.example/"', "https://b.example/"],
            ["https://a.example/", "https://b.example/"],
        ),
        ('<a title="a>b" data-href="x" href=@>', ['"https://a.example/"'], ["https://a.example/"]),
        ("<a title='href=\"no\"' href=@>", ["'https://a.example/'"], ["https://a.example/"]),
        ("<a download href=@>", ['"https://a.example/"'], ["https://a.example/"]),
        ("<a\thref=@\tid=x>", ["https://a.example/"], ["https://a.example/"]),
        # The first of two href attributes is the one browsers follow.
        (
            '<a href=@ href="https://second.example/">',
            ['"https://a.example/"'],
            ["https://a.example/"],
        ),
    ],
    ids=[
        "document",
        "crlf-and-spacing",
        "gt-in-value",
        "href-in-value",
        "bare-attr",
        "tabs",
        "dup",
    ],
)
def test_only_the_href_values_change(
    template: str, values: list[str], destinations: list[str]
) -> None:
    source = fill(template, values)
    result = run(source)
    restored, indexes = put_back(result.html, values, quote='"')
    assert restored == source
    assert indexes == list(range(1, len(values) + 1))
    assert result.links == [Link(i, url) for i, url in enumerate(destinations, start=1)]


@pytest.mark.parametrize(
    ("value", "destination"),
    [
        ('"https://a.example/?q=1&amp;r=2"', "https://a.example/?q=1&r=2"),
        ("https://a.example/?q=1&amp;r=2&amp;r=3", "https://a.example/?q=1&r=2&r=3"),
        ('"https://a.example/say-&quot;hi&quot;"', 'https://a.example/say-"hi"'),
        ("'https://a.example/?q=\"x\"'", 'https://a.example/?q="x"'),
        ('"  https://a.example/x \n"', "https://a.example/x"),
        ('"HTTPS://A.EXAMPLE/Up"', "HTTPS://A.EXAMPLE/Up"),
        ('"https://exämple.example/päth?q=ü#frag"', "https://exämple.example/päth?q=ü#frag"),
        ('"http://a.example/#top"', "http://a.example/#top"),
        ('"https://a.example/?q=a%20b&amp;e=#x"', "https://a.example/?q=a%20b&e=#x"),
    ],
)
def test_the_destination_is_the_decoded_href(value: str, destination: str) -> None:
    source = f"<p><a href={value}>x</a></p>"
    result = run(source)
    restored, indexes = put_back(result.html, [value], quote='"')
    assert (restored, indexes) == (source, [1])
    assert result.links == [Link(1, destination)]


def test_the_new_href_is_escaped_for_an_attribute() -> None:
    result = run('<a href="https://a.example/">x</a>', base_url='https://t.example/a&b"c/')
    token = SIGNER.click_token(EMAIL_ID, 1)
    assert result.html == f'<a href="https://t.example/a&amp;b&quot;c/t/c/{token}">x</a>'


@pytest.mark.parametrize(
    "source",
    [
        '<a href="mailto:someone@a.example?subject=https://a.example/">m</a>',
        '<a href="tel:+15550100">t</a>',
        '<a href="#top">top</a>',
        '<a href="/relative/path">r</a>',
        '<a href="page.html?x=https://a.example/">r</a>',
        '<a href="//a.example/scheme-relative">r</a>',
        "<a href=\"javascript:alert('https://a.example/')\">j</a>",
        '<a href="JavaScript:void(0)">j</a>',
        '<a href="ftp://a.example/file">f</a>',
        '<a href="https://">empty</a>',
        '<a href="http:a.example">no slashes</a>',
        '<a href="https://a.example/" data-beacon="off">off</a>',
        "<a DATA-BEACON=OFF href='https://a.example/'>off</a>",
        "<a href>no value</a><a name=x>no href</a>",
        '<link rel="stylesheet" href="https://a.example/style.css">',
        '<img src="https://a.example/logo.png">',
        '<p>https://a.example/ as text</p><div data-href="https://a.example/">d</div>',
        '<!-- <a href="https://a.example/">c</a> -->',
        "<script>document.write('<a href=\"https://a.example/\">s</a>')</script>",
        '<style>/* <a href="https://a.example/"> */</style>',
    ],
)
def test_links_that_are_not_web_links_are_left_alone(source: str) -> None:
    assert run(source) == Instrumented(source, "", [])


def test_a_destination_keeps_its_index_wherever_it_appears_again() -> None:
    html = (
        '<a href="https://a.example/">1</a> <a href="https://b.example/">2</a>'
        " <a href='https://a.example/'>3</a> <a href=\"https://a.example/?x=1\">4</a>"
    )
    text = "https://b.example/ then https://c.example/ then https://a.example/."
    result = run(html, text)
    _, html_indexes = put_back(result.html, ["", "", "", ""], quote='"')
    _, text_indexes = put_back(result.text, ["", "", ""])
    assert html_indexes == [1, 2, 1, 3]
    assert text_indexes == [2, 4, 1]
    assert result.links == [
        Link(1, "https://a.example/"),
        Link(2, "https://b.example/"),
        Link(3, "https://a.example/?x=1"),
        Link(4, "https://c.example/"),
    ]


UTM = {"utm_source": "mailbeacon", "utm_medium": "email"}


@pytest.mark.parametrize(
    ("url", "tagged"),
    [
        ("https://a.example/", "https://a.example/?utm_source=mailbeacon&utm_medium=email"),
        ("https://a.example", "https://a.example?utm_source=mailbeacon&utm_medium=email"),
        ("https://a.example/?", "https://a.example/?utm_source=mailbeacon&utm_medium=email"),
        (
            "https://a.example/?a=1&",
            "https://a.example/?a=1&utm_source=mailbeacon&utm_medium=email",
        ),
        (
            "https://a.example/p?b=2&a=1&a=3&blank=&flag&q=a%20b+c",
            "https://a.example/p?b=2&a=1&a=3&blank=&flag&q=a%20b+c"
            "&utm_source=mailbeacon&utm_medium=email",
        ),
        (
            "https://a.example/#top?not=query",
            "https://a.example/?utm_source=mailbeacon&utm_medium=email#top?not=query",
        ),
        (
            "https://a.example/?x=1#a#b",
            "https://a.example/?x=1&utm_source=mailbeacon&utm_medium=email#a#b",
        ),
        (
            "https://a.example/?utm_source=news",
            "https://a.example/?utm_source=news&utm_medium=email",
        ),
        (
            "https://a.example/?utm%5Fsource=news",
            "https://a.example/?utm%5Fsource=news&utm_medium=email",
        ),
        (
            "https://a.example/?utm_source=&utm_medium=x",
            "https://a.example/?utm_source=&utm_medium=x",
        ),
        (
            "https://exämple.example/ü",
            "https://exämple.example/ü?utm_source=mailbeacon&utm_medium=email",
        ),
    ],
)
def test_add_utm_appends_only_missing_parameters(url: str, tagged: str) -> None:
    assert add_utm(url, UTM) == tagged


def test_add_utm_encodes_what_it_adds() -> None:
    utm = {"utm_campaign": "spring sale & more #1", "utm content": "été/2024=+"}
    assert add_utm("https://a.example/", utm) == (
        "https://a.example/?utm_campaign=spring%20sale%20%26%20more%20%231"
        "&utm%20content=%C3%A9t%C3%A9/2024%3D%2B"
    )


def test_add_utm_with_nothing_to_add_returns_the_url_as_it_was() -> None:
    assert add_utm("https://a.example/?q=1#f", {}) == "https://a.example/?q=1#f"


def test_utm_is_added_to_tracked_links_only() -> None:
    utm = {
        "utm_source": "mailbeacon",
        "utm_campaign": "{campaign}",
        "utm_content": "{template}{x}",
        "utm_term": "{template}",
    }
    html = (
        '<a href="https://a.example/?utm_source=news&amp;a=1#top">a</a>'
        '<a href="mailto:x@a.example">m</a><a href="/r">r</a>'
    )
    result = run(html, "https://b.example/", utm=utm, utm_context={"campaign": "7"})
    assert '<a href="mailto:x@a.example">m</a><a href="/r">r</a>' in result.html
    assert result.links == [
        Link(1, "https://a.example/?utm_source=news&a=1&utm_campaign=7&utm_content=%7Bx%7D#top"),
        Link(2, "https://b.example/?utm_source=mailbeacon&utm_campaign=7&utm_content=%7Bx%7D"),
    ]


def test_links_equal_once_tagged_share_an_index() -> None:
    html = '<a href="https://a.example/">1</a><a href="https://a.example/?utm_source=mb">2</a>'
    result = run(html, utm={"utm_source": "mb"})
    assert put_back(result.html, ["", ""], quote='"')[1] == [1, 1]
    assert result.links == [Link(1, "https://a.example/?utm_source=mb")]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("<html><body>\n<p>x</p>\n</body></html>", "<html><body>\n<p>x</p>\n@</body></html>"),
        ("<BODY>x</BODY >", "<BODY>x@</BODY >"),
        ("<p>a fragment</p>", "<p>a fragment</p>@"),
        ("", "@"),
        (
            "<body><script>s = '</body>'</script>x</body>",
            "<body><script>s = '</body>'</script>x@</body>",
        ),
        ("<body>x<!-- </body> --></body>", "<body>x<!-- </body> -->@</body>"),
        ("<body>ünï ✓\nx</body>\n", "<body>ünï ✓\nx@</body>\n"),
    ],
)
def test_the_pixel_goes_right_before_the_body_end_tag(source: str, expected: str) -> None:
    result = run(source, "text", flags=OPENS)
    assert result == Instrumented(fill(expected, [pixel()]), "text", [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            '<html><body class="x">\n<p>x</p></body></html>',
            '<html><body class="x">@\n<p>x</p></body></html>',
        ),
        ('<html><BODY\n  style="margin:0">x</BODY>', '<html><BODY\n  style="margin:0">@x</BODY>'),
        ('<body><a href="/r">r</a></body>', '<body>@<a href="/r">r</a></body>'),
        ('<a href="/r">r</a>', '@<a href="/r">r</a>'),
        ("", "@"),
    ],
)
def test_the_honeypot_goes_right_after_the_body_start_tag(source: str, expected: str) -> None:
    result = run(source, "text", honeypot=True)
    assert result == Instrumented(fill(expected, [honeypot_link()]), "text", [Link(0, "", True)])


def test_the_honeypot_comes_before_the_real_links() -> None:
    result = run('<body><a href="https://a.example/">a</a></body>', flags=BOTH, honeypot=True)
    assert result.links == [Link(0, "", honeypot=True), Link(1, "https://a.example/")]
    assert result.html.count("aria-hidden") == 1
    assert put_back(result.html, ["", ""], quote='"')[1] == [0, 1]


FLAGS_HTML = '<html><body><a href="https://a.example/">a</a></body></html>'
FLAGS_TEXT = "Read https://a.example/"


@pytest.mark.parametrize(
    ("flags", "honeypot", "pixel_added", "links_rewritten", "links"),
    [
        (NONE, True, False, False, []),
        (OPENS, True, True, False, [Link(0, "", True)]),
        (OPENS, False, True, False, []),
        (CLICKS, True, False, True, [Link(0, "", True), Link(1, "https://a.example/")]),
        (CLICKS, False, False, True, [Link(1, "https://a.example/")]),
        (BOTH, True, True, True, [Link(0, "", True), Link(1, "https://a.example/")]),
        (BOTH, False, True, True, [Link(1, "https://a.example/")]),
    ],
)
def test_the_flags_decide_what_is_added(
    flags: TrackingFlags,
    honeypot: bool,
    pixel_added: bool,
    links_rewritten: bool,
    links: list[Link],
) -> None:
    result = run(FLAGS_HTML, FLAGS_TEXT, flags=flags, honeypot=honeypot)
    assert (pixel() in result.html) is pixel_added
    assert ('href="https://a.example/"' not in result.html) is links_rewritten
    assert (result.text != FLAGS_TEXT) is links_rewritten
    assert (honeypot_link() in result.html) is bool(links and links[0].honeypot)
    assert result.links == links


def test_no_tracking_returns_both_parts_untouched() -> None:
    assert run(FLAGS_HTML, FLAGS_TEXT, flags=NONE) == Instrumented(FLAGS_HTML, FLAGS_TEXT, [])


def test_a_trailing_slash_on_the_base_url_is_dropped() -> None:
    result = run('<a href="https://a.example/">a</a>', base_url=BASE + "/")
    assert put_back(result.html, ['"https://a.example/"'], quote='"') == (
        '<a href="https://a.example/">a</a>',
        [1],
    )


@pytest.mark.parametrize(
    ("template", "urls"),
    [
        ("See @.", ["https://a.example/x"]),
        ("Link: <@>", ["https://a.example/x"]),
        ("(@), then", ["https://a.example/x"]),
        ("Quoted '@'! and \"@\"?", ["https://a.example/x", "https://b.example/"]),
        ("[@];", ["https://a.example/x"]),
        (
            "@ and (@).",
            ["https://w.example/Mercury_(planet)", "https://w.example/Mercury_(planet)"],
        ),
        ("Up: @?", ["HTTPS://A.example/Up"]),
        ("naïve → @ …", ["https://exämple.example/päth?q=ü&r=1#frag"]),
        ("a\r\n\t@\u00a0b\n", ["http://a.example/?a=1&a=2"]),
        ("@:\n@,", ["https://a.example/", "https://a.example/"]),
    ],
)
def test_text_urls_are_rewritten_without_their_punctuation(template: str, urls: list[str]) -> None:
    source = fill(template, urls)
    result = run("", source)
    restored, indexes = put_back(result.text, urls)
    assert restored == source
    destinations = list(dict.fromkeys(urls))
    assert indexes == [destinations.index(url) + 1 for url in urls]
    assert result.links == [Link(i, url) for i, url in enumerate(destinations, start=1)]


@pytest.mark.parametrize(
    "source",
    [
        "Write to mailto:someone@a.example or call tel:+15550100.",
        "www.a.example and a.example/path and ftp://a.example/",
        "https:// alone, http:a.example, and <https://>",
        "",
    ],
)
def test_text_without_web_urls_is_left_alone(source: str) -> None:
    assert run("", source) == Instrumented("", source, [])
