"""The one YAML reader for anything a user hands medloop (campaign files, API bodies, forms).

A user's YAML must not be able to hold the process: the text is capped in size, parsed by
libyaml (the C parser) when it is available, and refused before any object is built when it
uses anchors or aliases ("billion laughs": a few hundred bytes that expand to gigabytes),
nests deeper than `MAX_DEPTH`, or repeats a key in one mapping (last-wins would silently drop
a setting). Every refusal is a `SpecError` naming the source and the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medloop.core.errors import SpecError

MAX_BYTES = 1_000_000  # a campaign file is a few kB; 1 MB leaves room and bounds the parse
MAX_DEPTH = 32  # nesting levels of mappings and sequences
MAX_NODES = 20_000  # scalars + collections; a campaign file has a few hundred
# libyaml when compiled in (about 10x faster than the pure-Python parser); same results.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlDoc:
    """A parsed document and the 1-based line of every key path (`budget.max_trials`)."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_for(self, dotted: str) -> int | None:
        """Line of `dotted`, or of its nearest parent key that has one."""
        parts = dotted.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None


def _where(source: str, mark: Any) -> str:
    return f"{source}: line {mark.line + 1}" if mark is not None else source


def _check_events(loader: yaml.SafeLoader, source: str) -> None:
    """Walk the event stream once (no objects built): refuse anchors, aliases, deep nesting,
    too many nodes and more than one document. Stops at the first refusal, so its cost is
    bounded by MAX_NODES events whatever the size of the text."""
    depth = 0
    documents = 0
    nodes = 0
    while True:
        event = loader.get_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.StreamEndEvent):
            return
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise SpecError(f"{_where(source, event.start_mark)}: more than {MAX_NODES:,} values")
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise SpecError(
                f"{_where(source, event.start_mark)}: YAML anchors and aliases (&name, *name) are not "
                "allowed in medloop files",
                hint="write each value out in full",
            )
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise SpecError(f"{_where(source, event.start_mark)}: more than one YAML document (---)")
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"{_where(source, event.start_mark)}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _walk(root: yaml.Node, source: str) -> dict[str, int]:
    """Key path -> line; refuses a key repeated in one mapping. Iterative (depth is bounded
    anyway) and each node is visited once: aliases were refused, so the tree is a tree."""
    lines: dict[str, int] = {}
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                line = key.start_mark.line + 1
                if name in seen:
                    path = f"{prefix}.{name}" if prefix else name
                    raise SpecError(
                        f"{source}: line {line}: duplicate key {path!r} (first on line {seen[name]})",
                        hint="keep one of them",
                    )
                seen[name] = line
                path = f"{prefix}.{name}" if prefix else name
                lines[path] = line
                stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}.{i}" if prefix else str(i)
                lines[path] = item.start_mark.line + 1
                stack.append((item, path))
    return lines


def _text(content: str | bytes, source: str, max_bytes: int) -> str:
    size = len(content) if isinstance(content, bytes) else len(content.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise SpecError(f"{source}: {size:,} bytes; a medloop YAML file may hold at most {max_bytes:,}")
    if isinstance(content, bytes):
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"{source}: not a UTF-8 text file") from None
    return content


def _yaml_error(exc: yaml.YAMLError, source: str, text: str) -> SpecError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    if mark is None:
        return SpecError(f"{source}: not valid YAML ({problem})")
    # libyaml puts an unexpected end of stream on the line after the last one
    line = min(mark.line + 1, max(1, len(text.splitlines())))
    return SpecError(f"{source}: line {line}: not valid YAML ({problem})")


def parse(content: str | bytes, *, source: str, max_bytes: int = MAX_BYTES) -> YamlDoc:
    """Parse a user's YAML text into plain data with key lines. Raises SpecError."""
    text = _text(content, source, max_bytes)
    if not text.strip():
        return YamlDoc(None)
    try:
        loader = _Loader(text)
        try:
            _check_events(loader, source)
        finally:
            loader.dispose()
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return YamlDoc(None)
            lines = _walk(node, source)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer of more digits than Python converts (int_max_str_digits)
        raise SpecError(f"{source}: a value cannot be read ({exc})") from None
    return YamlDoc(data, lines)


def load(content: str | bytes, *, source: str, max_bytes: int = MAX_BYTES) -> Any:
    """`parse(...).data`: the plain data of a user's YAML text."""
    return parse(content, source=source, max_bytes=max_bytes).data


def read(path: Path, *, max_bytes: int = MAX_BYTES) -> YamlDoc:
    """Parse a YAML file, refusing one over `max_bytes` before reading it whole."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            content = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise SpecError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{source}: is a folder, not a YAML file") from None
    except PermissionError:
        raise SpecError(f"{source}: cannot be read (permission denied)") from None
    if len(content) > max_bytes:
        raise SpecError(
            f"{source}: over {max_bytes:,} bytes; a medloop YAML file may hold at most {max_bytes:,}"
        )
    return parse(content, source=source, max_bytes=max_bytes)


def scalar(text: str) -> Any:
    """A one-line form value as YAML reads it ('12' -> 12, '8m' stays a string)."""
    try:
        return load(text, source="field", max_bytes=4096)
    except SpecError:
        return text
