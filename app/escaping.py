"""One escaping rule for every string a user or a file supplies (run and model names, data specs,
questions, answers, error messages) before it reaches the page.

``esc`` turns ``& < >`` into entities and quotes plus Markdown's structural characters into numeric
character references. The same text is then safe, and shows literally, wherever the studio puts it:
inside ``gr.HTML`` (text and attribute values), ``gr.Markdown`` (references never form Markdown
syntax: no links, emphasis, code spans or LaTeX), error toasts, and Plotly titles, labels and hover
text (Plotly decodes numeric references but knows no ``&quot;``).

Not escaped, because Gradio shows them as plain text: a field's ``info`` line, ``gr.Dataframe``
cells, ``gr.Code``, ``gr.Textbox`` values and dropdown labels (escaping there would show the
references themselves).
"""

from __future__ import annotations

import re
from typing import Any

# Quotes (attribute values), Markdown / GFM / Gradio-LaTeX inline markup, and line breaks (so no line of
# the text can start a Markdown block; the text's own start is handled by _LEADING).
_MAP = {"&": "&amp;", "<": "&lt;", ">": "&gt;"} | {c: f"&#{ord(c)};" for c in "\"'`*_[]|~$\\\n\r"}
_TABLE = str.maketrans(_MAP)
# What makes a block only at the start of a line: a heading, a list item, a rule.
_LEADING = re.compile(r"^(?:[#+=-]|\d+(?=[.)]))")


def esc(value: Any) -> str:
    """``value`` as text that displays literally in HTML, Markdown, toasts and Plotly labels."""
    text = ("" if value is None else str(value)).translate(_TABLE)
    return _LEADING.sub(lambda m: "".join(f"&#{ord(c)};" for c in m.group()), text, count=1)


def code(value: Any) -> str:
    """Inline code for Markdown or HTML (an HTML ``<code>``: a Markdown code span would show the
    references instead of the characters)."""
    return f"<code>{esc(value)}</code>"
