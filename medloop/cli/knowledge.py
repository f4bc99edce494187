"""`medloop knowledge`: Maintain the knowledge base: rebuild indexes, quarantine, import/export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medloop.cli.common import console, err_console, print_json, settings

app = typer.Typer(
    help="Maintain the knowledge base: rebuild indexes, quarantine, import/export.", no_args_is_help=True
)

ROLE_HELP = "Role you act in (reviewer or admin; quarantine also allows agent)"


def _store() -> Any:
    from medloop.core.store import open_store

    return open_store(settings().store_url)


def _kb(*, reconcile: bool = True, reembed: bool = False, repair: bool = False) -> Any:
    from medloop import bootstrap

    return bootstrap.knowledge(settings(), _store(), reconcile=reconcile, reembed=reembed, repair=repair)


def _counts(title: str, counts: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(counts)
        return
    console.print(f"[bold]{title}[/]  " + "  ".join(f"{k} {v}" for k, v in counts.items()))


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Claims by tier, index sizes, embedder, and whether this process may write the index."""
    from collections import Counter

    kb = _kb()
    tiers = Counter(kb.store.claims.tiers().values())
    data = {
        "claims": sum(tiers.values()),
        "tiers": dict(sorted(tiers.items())),
        "embedder": kb.embedder.name,
        "dim": kb.embedder.dim,
        "vector_index": type(kb.vectors).__name__,
        "vectors": len(kb.vectors.ids()),
        "graph_nodes": len(kb.graph.nodes()),
        "graph_watermark": kb.graph.watermark,
        "writer": kb.owner,
        "active_quarantines": len(kb.store.quarantines.list(active_only=True)),
    }
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        console.print(f"{key:>20}  {value}", markup=False)


@app.command()
def rebuild(
    reembed: bool = typer.Option(
        False, "--reembed", help="Re-embed every statement (after changing the embedder)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Drop the vector index and the graph and rebuild both from SQL (a corrupt vector
    index is moved aside, kept, and rebuilt)."""
    kb = _kb(reconcile=False, reembed=reembed, repair=True)
    if kb.set_aside is not None:
        err_console.print(
            f"the vector index was corrupt: moved it to {kb.set_aside}; rebuilding it from SQL",
            markup=False,
            highlight=False,
        )
    _counts("rebuilt", kb.rebuild(reembed=reembed), as_json)


@app.command()
def reconcile(as_json: bool = typer.Option(False, "--json")) -> None:
    """Bring the indexes in line with SQL (also done whenever the knowledge base opens)."""
    _counts("reconciled", _kb(reconcile=False).reconcile(), as_json)


@app.command("quarantine")
def quarantine_cmd(
    target: str = typer.Argument(..., help="A source (source:<name>), trial, campaign or claim id"),
    why: str = typer.Option(..., "--why", help="Why it is quarantined (kept in the audit log)"),
    role: str = typer.Option("reviewer", "--role", help=ROLE_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Demote every claim derived from TARGET out of planning, at once. Undo: unquarantine."""
    from medloop.knowledge.quarantine import quarantine

    q = quarantine(_store(), target, why=why, actor=settings().user, role=role)
    if as_json:
        print_json(q.model_dump(mode="json"))
        return
    console.print(
        f"quarantine {q.id}: {q.target_type} {q.target_id}: {len(q.members)} claim(s) demoted", markup=False
    )
    for cid, prev in q.members.items():
        console.print(f"  {cid}  (was {prev})", markup=False)
    console.print(f"undo: medloop knowledge unquarantine {q.id} --reason ...", markup=False)


@app.command()
def unquarantine(
    quarantine_id: str = typer.Argument(..., help="Quarantine id (qtn_...)"),
    reason: str = typer.Option(..., "--reason", help="Why it is lifted (kept in the audit log)"),
    role: str = typer.Option("reviewer", "--role", help="reviewer or admin"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Lift a quarantine: its claims get their tiers back (unless another quarantine holds them)."""
    from medloop.knowledge.quarantine import lift

    q = lift(_store(), quarantine_id, actor=settings().user, role=role, reason=reason)
    if as_json:
        print_json(q.model_dump(mode="json"))
        return
    console.print(
        f"lifted {q.id} ({q.target_type} {q.target_id}); {len(q.members)} member claim(s)", markup=False
    )


@app.command()
def quarantines(
    show_all: bool = typer.Option(False, "--all", help="Include lifted quarantines"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List quarantines (active ones unless --all)."""
    items = _store().quarantines.list(active_only=not show_all)
    if as_json:
        print_json([q.model_dump(mode="json") for q in items])
        return
    if not items:
        console.print("no quarantines")
    for q in items:
        state = f"lifted {q.lifted_at} by {q.lifted_by}" if q.lifted_at else "active"
        console.print(
            f"{q.id}  {q.target_type} {q.target_id}  {len(q.members)} claim(s)  {state}  by {q.actor}: {q.why}",
            markup=False,
        )


@app.command("export")
def export_cmd(
    path: Path = typer.Argument(..., help="Output file (JSON lines)"),
    tier: list[str] = typer.Option(None, "--tier", help="Only these tiers (default: all live tiers)"),
    dataset: str = typer.Option(None, "--dataset"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write claims with evidence and trial provenance as JSON lines, to share findings."""
    from medloop.cli.claims import check_tiers
    from medloop.knowledge.transfer import export_claims

    n = export_claims(_store(), path, tiers=check_tiers(tier) or None, dataset=dataset)
    _counts(f"exported to {path}", {"claims": n}, as_json)


@app.command("import")
def import_cmd(
    path: Path = typer.Argument(..., help="A file written by `medloop knowledge export`"),
    source: str = typer.Option(None, "--source", help="Name of the lab/source (default: the file name)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import shared claims. They enter as `external` (below supported), whatever their tier was."""
    from medloop.knowledge.transfer import import_claims, read_export

    for _ in read_export(path):  # validate before the knowledge base (and its model) loads
        pass
    name = source or path.name.split(".")[0]
    counts = import_claims(_kb(), path, source=name, actor=settings().user)
    _counts(f"imported from source:{name}", counts, as_json)
