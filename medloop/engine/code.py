"""Code hypotheses on the host: check a module before it may run, keep it content-addressed,
and stage it read-only for the trials that name it (contract: core/code.py).

The checks are a fast first filter, not the containment: a module runs only inside a
sandbox, and every metric is recomputed on the host from raw predictions, so code cannot
fake a score. The checks make a wrong module fail in a second with a reason (it does not
parse, is too big, imports something outside the allowed list, or does not implement its
extension point) instead of minutes into a trial.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medloop.core.code import (
    ALLOWED_IMPORTS,
    INTERFACES,
    MAX_SOURCE_BYTES,
    SHA256,
    AuthorKind,
    CodeModule,
    source_sha256,
)
from medloop.core.errors import NotFoundError, SpecError
from medloop.core.store.base import Store

LIBRARY_PACKAGE = "medloop.experiments.extensions.library"
# Names a module may not call or reach: escape hatches around the import check.
FORBIDDEN_NAMES = frozenset(
    {"__import__", "eval", "exec", "compile", "open", "globals", "locals", "vars", "breakpoint", "input"}
)
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "__builtins__",
        "__globals__",
        "__subclasses__",
        "__code__",
        "__closure__",
        "__import__",
        "__loader__",
        "__spec__",
        "__dict__",
        "__mro__",
        "__bases__",
        "__getattribute__",
    }
)


# Strings a reviewer should see flagged: a module naming the job's outputs or labels is not
# refused (the sandbox gives it no evaluation labels and the host recomputes every metric
# from raw predictions, so it cannot change a score), but its intent is worth a look.
FLAG_PATTERNS = (
    ("result.json", "names result.json (the host recomputes every metric; a written result cannot count)"),
    ("labelsTr", "names labelsTr (evaluation labels never enter the sandbox)"),
    ("labelsTs", "names labelsTs (evaluation labels never enter the sandbox)"),
    ("/out", "names /out (outputs are read back with no-follow checks and recomputed)"),
    ("/in/", "names /in/ (inputs are read-only; held-out labels are not there)"),
)


@dataclass
class CodeCheck:
    """What the host found in a module: ok when `problems` is empty."""

    sha256: str
    point: str | None
    size: int
    imports: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_source(source: str, *, point: str | None = None) -> CodeCheck:
    """Parse and check a module; `point`, if given, must be the one it declares."""
    size = len(source.encode("utf-8"))
    check = CodeCheck(sha256=source_sha256(source), point=None, size=size)
    if size > MAX_SOURCE_BYTES:
        check.problems.append(f"module is {size} bytes; the limit is {MAX_SOURCE_BYTES}")
        return check
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        check.problems.append(f"syntax error at line {exc.lineno}: {exc.msg}")
        return check
    declared: str | None = None
    functions: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "EXTENSION_POINT" for t in node.targets
        ):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                declared = node.value.value
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = [a.arg for a in node.args.posonlyargs + node.args.args]
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Import):
            check.imports += [alias.name for alias in sub.names]
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:
                check.problems.append(f"line {sub.lineno}: relative imports are not allowed")
            check.imports.append(sub.module or "")
            if any(alias.name == "*" for alias in sub.names):
                check.problems.append(f"line {sub.lineno}: `import *` is not allowed")
        elif isinstance(sub, ast.Name) and sub.id in FORBIDDEN_NAMES:
            check.problems.append(f"line {sub.lineno}: {sub.id} is not allowed in a code hypothesis")
        elif isinstance(sub, ast.Attribute) and sub.attr in FORBIDDEN_ATTRIBUTES:
            check.problems.append(f"line {sub.lineno}: attribute {sub.attr} is not allowed")
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            for needle, why in FLAG_PATTERNS:
                if needle in sub.value and f"line {sub.lineno}: {why}" not in check.flags:
                    check.flags.append(f"line {sub.lineno}: {why}")
    for name in sorted(set(check.imports)):
        if name.split(".")[0] not in ALLOWED_IMPORTS:
            check.problems.append(
                f"imports {name!r}; allowed top-level modules: {', '.join(sorted(ALLOWED_IMPORTS))}"
            )
    if declared is None:
        check.problems.append('no EXTENSION_POINT = "<point>" constant at module level')
    elif declared not in INTERFACES:
        check.problems.append(f"EXTENSION_POINT {declared!r} is not one of {sorted(INTERFACES)}")
    elif point is not None and declared != point:
        check.problems.append(f"EXTENSION_POINT is {declared!r}, expected {point!r}")
    else:
        fn, params = INTERFACES[declared]
        got = functions.get(fn)
        if got is None:
            check.problems.append(f"no top-level function {fn}() for extension point {declared!r}")
        elif tuple(got[: len(params)]) != params:
            check.problems.append(f"{fn}({', '.join(got)}) must take parameters ({', '.join(params)})")
    check.point = declared
    return check


def library() -> dict[str, str]:
    """The code moves shipped with medloop: name -> source."""
    out: dict[str, str] = {}
    for entry in resources.files(LIBRARY_PACKAGE).iterdir():
        if entry.name.endswith(".py") and not entry.name.startswith("_"):
            out[entry.name.removesuffix(".py")] = entry.read_text(encoding="utf-8")
    return dict(sorted(out.items()))


def trusted_hashes() -> set[str]:
    return {source_sha256(source) for source in library().values()}


def _first_docstring_line(source: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def module_for(
    source: str,
    *,
    name: str,
    author: str,
    author_kind: AuthorKind = "human",
    rationale: str = "",
    baseline: str | None = None,
    point: str | None = None,
    campaign_id: str | None = None,
) -> CodeModule:
    """The record of a module that passes the checks; SpecError (one line, every problem
    named) if it does not. `baseline`: the source it replaces, for the reviewer's diff (a
    module that replaces built-in behaviour is diffed against nothing: all of it is new)."""
    check = check_source(source, point=point)
    if not check.ok or check.point is None:
        raise SpecError(f"code module {name!r}: " + "; ".join(check.problems))
    diff = "".join(
        difflib.unified_diff(
            (baseline or "").splitlines(keepends=True),
            source.splitlines(keepends=True),
            "baseline" if baseline is not None else "built-in",
            name,
        )
    )
    library_hashes = trusted_hashes()
    return CodeModule(
        sha256=check.sha256,
        point=check.point,  # type: ignore[arg-type]  # checked against INTERFACES above
        name=name,
        rationale=rationale or _first_docstring_line(source),
        author=author,
        author_kind=author_kind,
        trusted=check.sha256 in library_hashes,
        size=check.size,
        imports=sorted(set(check.imports)),
        diff=diff,
        flags=check.flags,
        campaign_id=campaign_id,
    )


def register(store: Store, source: str, **meta: Any) -> CodeModule:
    """Check a module and keep it in the knowledge base (idempotent on its hash): what the
    CLI, the API and the planners call. `meta`: the keyword arguments of `module_for`."""
    module = module_for(source, **meta)
    store.code.put(module, source)
    return store.code.get(module.sha256)[0]


def register_library(store: Store, points: list[str], moves: list[str]) -> list[CodeModule]:
    """The shipped code moves at these points (only `moves`, if any are named), registered
    in the knowledge base for every campaign. SpecError for a move that does not ship."""
    shipped = library()
    unknown = sorted(set(moves) - set(shipped))
    if unknown:
        raise SpecError(f"code.moves: {', '.join(unknown)} not shipped; available: {', '.join(shipped)}")
    out = []
    for name, source in shipped.items():
        if moves and name not in moves:
            continue
        check = check_source(source)
        if check.point in points:
            out.append(register(store, source, name=name, author="medloop-library", author_kind="planner"))
    return out


def add_code_hypothesis(
    store: Store,
    campaign_id: str,
    source: str,
    *,
    point: str,
    author: str,
    rationale: str = "",
    name: str | None = None,
) -> CodeModule:
    """A person's code hypothesis for a campaign (CLI `medloop hypotheses add --code`, the
    API): checked, stored, audited, and queued for the campaign's next cycle. SpecError
    (one line) for a module that fails the checks or a point the campaign does not open."""
    campaign = store.campaigns.get(campaign_id)
    if point not in INTERFACES:
        raise SpecError(f"point {point!r} is not an extension point; use one of {', '.join(INTERFACES)}")
    if point not in campaign.spec.code.points:
        raise SpecError(
            f"campaign {campaign_id} does not open extension point {point!r} to code hypotheses",
            hint=f"its code.points: {list(campaign.spec.code.points) or 'none'}",
        )
    with store.transaction():
        module = register(
            store,
            source,
            name=name or f"{author}-{point}-{source_sha256(source)[:8]}",
            author=author,
            author_kind="human",
            rationale=rationale,
            point=point,
            campaign_id=campaign_id,
        )
        store.audit.append(
            author,
            "code.add",
            "campaign",
            campaign_id,
            {"sha256": module.sha256, "point": point, "name": module.name, "flags": module.flags},
        )
    return module


class CodeStore:
    """Checked modules, content-addressed in a workspace folder: `<sha256>.py` (read-only)
    and `<sha256>.json` (the CodeModule record). Writes are atomic; a module is immutable."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(
        self, source: str, *, name: str, author: str, rationale: str = "", baseline: str | None = None
    ) -> CodeModule:
        """Check and keep a module. SpecError (one line, every problem named) if it fails."""
        module = module_for(source, name=name, author=author, rationale=rationale, baseline=baseline)
        if not (self.root / f"{module.sha256}.py").is_file():
            self._write(f"{module.sha256}.py", source)
            self._write(f"{module.sha256}.json", module.model_dump_json(indent=2))
        return self.get(module.sha256)[0]

    def get(self, sha256: str) -> tuple[CodeModule, str]:
        if not SHA256.match(sha256):
            raise NotFoundError(f"{sha256!r} is not a code module hash")
        try:
            source = (self.root / f"{sha256}.py").read_text(encoding="utf-8")
            module = CodeModule.model_validate_json((self.root / f"{sha256}.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(f"code module {sha256[:12]} is not in this workspace") from None
        if source_sha256(source) != sha256:
            raise SpecError(f"code module {sha256[:12]}: stored source no longer matches its hash")
        return module, source

    def modules(self) -> list[CodeModule]:
        if not self.root.is_dir():
            return []
        found = [CodeModule.model_validate_json(p.read_text()) for p in sorted(self.root.glob("*.json"))]
        return sorted(found, key=lambda m: (m.point, m.name))

    def add_library(self) -> list[CodeModule]:
        """Register every shipped code move (idempotent)."""
        return [self.put(src, name=name, author="medloop-library") for name, src in library().items()]

    def stage(self, shas: list[str], staging_dir: Path, sources: dict[str, str] | None = None) -> Path:
        """A read-only folder holding exactly these modules, for the job input `code`
        (`sources`: sha -> source known elsewhere, e.g. the knowledge base)."""
        key = source_sha256(json.dumps(sorted(shas)))[:16]
        folder = staging_dir / f"code-{key}"
        if folder.is_dir():
            return folder
        tmp = Path(tempfile.mkdtemp(dir=staging_dir, prefix=".code-"))
        for sha in shas:
            source = (sources or {}).get(sha) or self.get(sha)[1]
            if source_sha256(source) != sha:
                raise SpecError(f"code module {sha[:12]}: its source does not match its hash")
            path = tmp / f"{sha}.py"
            path.write_text(source, encoding="utf-8")
            path.chmod(0o444)
        tmp.chmod(0o555)
        try:
            tmp.rename(folder)
        except OSError:  # another process staged the same set first
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(0o444)
        Path(tmp).replace(self.root / name)
