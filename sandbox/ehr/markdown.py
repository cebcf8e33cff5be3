"""Card ``detail`` is GitHub-flavoured markdown from another system: rendered with raw HTML off
and unsafe link schemes refused (markdown-it's defaults), so a card cannot script the EHR."""

from __future__ import annotations

from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def render_detail(detail: object) -> str:
    return _RENDERER.render(detail) if isinstance(detail, str) else ""
