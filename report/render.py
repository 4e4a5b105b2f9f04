"""The report as a list of blocks, rendered two ways: README.md (figures beside it) and a
self-contained index.html (figures embedded as base64). Both come from the same blocks, so they
say the same thing; neither holds anything that is not in the blocks (no dates, no paths of the machine).
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # may hold **bold** and `code`


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the report folder, e.g. figures/eda_samples.png
    caption: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> "Document":
        self.blocks.extend(blocks)
        return self

    def figures(self) -> list[str]:
        return [b.path for b in self.blocks if isinstance(b, Figure)]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            lines.append("|" + "|".join("---" for _ in block.headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return "\n".join(lines).rstrip() + "\n"


_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"`(.+?)`"), r"<code>\1</code>"),
]


def _inline(text: str) -> str:
    out = html.escape(str(text), quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; }
figcaption, caption { color: #555; font-size: 0.9rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def to_html(document: Document, root: Path) -> str:
    """Self-contained HTML: each figure is read from `root`/path and embedded as a data URI."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(document.title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>{html.escape(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((root / block.path).read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}" '
                         f'data-file="{html.escape(block.path)}"><figcaption>{_inline(block.caption)}'
                         "</figcaption></figure>")
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def write_report(document: Document, folder: Path) -> dict[str, Path]:
    """Write README.md and index.html into `folder` (figures must already be in it)."""
    folder = Path(folder)
    missing = [p for p in document.figures() if not (folder / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: the report references figures that were not written: {missing}")
    readme = folder / "README.md"
    index = folder / "index.html"
    readme.write_text(to_markdown(document), encoding="utf-8")
    index.write_text(to_html(document, folder), encoding="utf-8")
    return {"readme": readme, "html": index}
