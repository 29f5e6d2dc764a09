"""A griffe extension for the documentation site (``mkdocs.yml``): the package's docstrings are written in reST's
inline style (````code````, ``:func:`name```), mkdocstrings renders Markdown; this turns the one into the other.

- ````x```` -> `` `x` ``;
- ``:func:`~a.b.c``` -> `` `c` ``, ``:class:`a.B``` -> `` `a.B` `` (every role: func, class, meth, mod, attr, data,
  exc, obj);
- a reST literal block introduced by ``::`` at the end of a paragraph becomes a fenced code block.

A repository tool (``tools/`` is not installed); loaded by mkdocstrings as ``tools/griffe_rst.py:RstInline``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
LITERAL = re.compile(r"``(.+?)``", re.S)


def _role(m: re.Match) -> str:
    target = m.group(2).strip()
    if "<" in target and target.endswith(">"):  # :func:`text <target>`
        target = target[: target.index("<")].strip()
    if m.group(1) == "~":
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _literal_blocks(text: str) -> str:
    """``Paragraph::`` + an indented block -> ``Paragraph:`` + a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            base = len(line) - len(line.lstrip())
            if j < len(lines) and indent > base:
                stripped = line.rstrip()[:-1]
                out.append(stripped if stripped.strip() else "")
                out.append("")
                out.append(" " * base + "```")
                k = j
                while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= indent):
                    k += 1
                while k > j and not lines[k - 1].strip():
                    k -= 1
                out += [" " * base + ln[indent:] if ln.strip() else "" for ln in lines[j:k]]
                out.append(" " * base + "```")
                i = k
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def convert(text: str) -> str:
    """reST inline markup of a docstring -> Markdown."""
    text = _literal_blocks(text)
    text = ROLE.sub(_role, text)
    return LITERAL.sub(lambda m: "`" + m.group(1).replace("\n", " ") + "`", text)


#: subpackages of ``fastsam_onnx`` whose source lies outside ``runtime/`` (pyproject.toml's ``package-dir``)
OUTSIDE = {"models": "models", "export": "export", "benchmarks": "benchmarks"}
ROOT = Path(__file__).resolve().parents[1]


class RstInline(griffe.Extension):
    """Rewrite every docstring once the object tree is built; attach the subpackages that live outside
    ``runtime/`` (griffe finds ``fastsam_onnx`` in ``runtime/`` and would not see them)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:  # noqa: D102
        if pkg.path != "fastsam_onnx":
            return
        for name, folder in OUTSIDE.items():
            init = ROOT / folder / "__init__.py"
            if name not in pkg.members and init.is_file():
                pkg.set_member(name, loader._load_module(name, init, parent=pkg))

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None and not getattr(obj.docstring, "_rst_done", False):
            obj.docstring.value = convert(obj.docstring.value)
            obj.docstring._rst_done = True  # type: ignore[attr-defined]
