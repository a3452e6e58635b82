"""MkDocs hook: render the CLI reference from the typer app at build time.

``docs/cli.md`` holds the marker :data:`MARKER`; this hook replaces it with one section per command
registered on ``privmed.cli.app`` (usage, help text, arguments and options), so a new command or
option is documented the moment it is mounted. It walks the click command tree that typer builds
(typer vendors its own click, so a click plugin such as mkdocs-click cannot read it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- privmed-cli-reference -->"
CLI_PAGE = "cli.md"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the CLI page's marker with the generated reference; leave every other page as it is."""
    if page.file.src_uri != CLI_PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{CLI_PAGE} lacks the marker {MARKER} where the generated CLI reference goes")
    return markdown.replace(MARKER, cli_reference())


def cli_reference() -> str:
    """The Markdown reference of every command under ``privmed``, in the order the app lists them."""
    import typer

    from privmed.cli import app

    root = typer.main.get_command(app)
    root_context = root.context_class(root, info_name="privmed")
    sections = [_command_section(root, root_context, level=2, title="privmed")]
    for command, context, depth in walk_commands(root, root_context):
        sections.append(_command_section(command, context, level=min(2 + depth, 4)))
    return "\n\n".join(sections) + "\n"


def walk_commands(command: Any, context: Any, depth: int = 0) -> Iterator[tuple[Any, Any, int]]:
    """Every command and group below ``command``, depth first, with a click context naming its path."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return
    for name in command.list_commands(context):
        child = subcommands[name]
        if getattr(child, "hidden", False):
            continue
        child_context = child.context_class(child, info_name=name, parent=context)
        yield child, child_context, depth
        yield from walk_commands(child, child_context, depth + 1)


def _command_section(command: Any, context: Any, level: int, title: str | None = None) -> str:
    parameters = [p for p in command.get_params(context) if not getattr(p, "hidden", False) and p.name != "help"]
    arguments = [p for p in parameters if p.param_type_name == "argument"]
    options = [p for p in parameters if p.param_type_name == "option"]
    lines = [f"{'#' * level} {title or context.command_path}", ""]
    lines += ["```text", _usage(command, context, arguments, bool(options)), "```", ""]
    for paragraph, preformatted in _paragraphs(command.help or ""):
        lines += ["```text", paragraph, "```", ""] if preformatted else [_escape(paragraph), ""]
    subcommands = getattr(command, "commands", None)
    if subcommands:
        lines += ["| command | what it does |", "| --- | --- |"]
        for name in command.list_commands(context):
            child = subcommands[name]
            if not getattr(child, "hidden", False):
                lines.append(f"| `{context.command_path} {name}` | {_escape(child.get_short_help_str(limit=200))} |")
        lines.append("")
    for heading, group in (("argument", arguments), ("option", options)):
        if group:
            lines += [f"| {heading} | description |", "| --- | --- |"]
            for parameter in group:
                record = parameter.get_help_record(context) or (parameter.human_readable_name, "")
                lines.append(f"| `{record[0]}` | {_escape(' '.join(record[1].split()))} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _usage(command: Any, context: Any, arguments: list[Any], has_options: bool) -> str:
    """``privmed generate [OPTIONS] RUN_DIR``: the command path, options, then each argument."""
    pieces = [context.command_path]
    if has_options:
        pieces.append("[OPTIONS]")
    for argument in arguments:
        name = argument.name.upper() + ("..." if argument.nargs == -1 else "")
        pieces.append(name if argument.required else f"[{name}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _paragraphs(text: str) -> list[tuple[str, bool]]:
    """Help text split at blank lines: (paragraph, preformatted) pairs.

    A paragraph that click would not rewrap (its first line is ``\\b``) keeps its lines and is marked
    preformatted; any other paragraph is joined into one line.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if lines and lines[0].strip() == "\b":
            paragraphs.append(("\n".join(line.rstrip() for line in lines[1:]), True))
        elif block.strip():
            paragraphs.append((" ".join(line.strip() for line in lines), False))
    return paragraphs


def _escape(text: str) -> str:
    """Text with Markdown's special characters escaped, so help strings show as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")
