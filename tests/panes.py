"""Read the Arena's answer panes (`studio.highlight.answer_html`) back: the text and each token's source."""

from __future__ import annotations

from html.parser import HTMLParser


class _Tokens(HTMLParser):
    """Collects (text, source) of each `<span class="tk">` inside the answer `<div class="tasc-answer">`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[list] = []
        self._in_answer = False
        self._in_token = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("class") == "tasc-answer":
            self._in_answer = True
        elif self._in_answer and tag == "span" and "tk" in (a.get("class") or "").split():
            self._in_token = True
            self.tokens.append(["", a.get("data-src")])

    def handle_endtag(self, tag):
        if tag == "span":
            self._in_token = False
        elif tag == "div":
            self._in_answer = False

    def handle_data(self, data):
        if self._in_token:
            self.tokens[-1][0] += data
        elif self._in_answer and data:
            raise AssertionError(f"text outside a token span: {data!r}")


def pane_tokens(html: str) -> list[tuple[str, str | None]]:
    """(text, source) per token span of a pane; source None for the model's own tokens."""
    parser = _Tokens()
    parser.feed(html or "")
    return [(t, s) for t, s in parser.tokens]


def pane_text(html: str) -> str:
    """The answer's text as the pane shows it."""
    return "".join(t for t, _ in pane_tokens(html))


def pane_sources(html: str) -> set[str | None]:
    """The sources of the pane's tokens (None: written by the model)."""
    return {s for _, s in pane_tokens(html)}
