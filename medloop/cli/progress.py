"""Render campaign events in the terminal: one block per cycle, a progress bar per batch
of trials, and the final table of hypotheses, verdicts and the incumbent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medloop.core.records import Campaign, Hypothesis


def _fmt(value: Any, spec: str = "+.4f") -> str:
    return "-" if value is None else format(value, spec)


class CampaignConsole:
    """Callback for CampaignRunner events (kind, payload)."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.c = console
        self.verbose = verbose
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(**payload)

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_retrieved(self, cycle: int, claims: list[dict[str, Any]]) -> None:
        self.c.rule(f"cycle {cycle}")
        if not claims:
            self.c.print("  knowledge: no prior claims for this task yet")
            return
        used = ", ".join(f"{c['id']} ({c['tier']})" for c in claims[:8])
        more = f" +{len(claims) - 8} more" if len(claims) > 8 else ""
        self.c.print(f"  knowledge: {len(claims)} claims retrieved: {used}{more}")

    def on_hypotheses(self, cycle: int, items: list[dict[str, Any]]) -> None:
        for i, h in enumerate(items, 1):
            ev = f"  [dim](uses claims {', '.join(h['evidence'])})[/dim]" if h["evidence"] else ""
            self.c.print(f"  H{i} {escape(h['statement'])}{ev}")

    def on_planner_rejected(self, cycle: int, statement: str, why: str) -> None:
        self.c.print(f"  [yellow]planner output rejected[/yellow]: {escape(statement)}: {escape(why)}")

    def on_execute(self, cycle: int, phase: str, trials: int) -> None:
        what = {
            "reproduce": "reproduction trials (fresh seeds)",
            "screen": "screening runs (one seed, no claims)",
            "final": "final runs, fresh seeds (test split)",
        }.get(phase, "trials")
        self.progress = Progress(
            TextColumn(f"  {what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.c,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("trials", total=trials)

    def on_trial(
        self, cycle: int, id: str, status: str, seed: int, objective: float | None, error: str | None
    ) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)
        if status != "succeeded":
            self.c.print(f"  [red]trial {id} (seed {seed}) {status}[/red]: {escape(str(error))}")
        elif self.verbose:
            self.c.print(f"  trial {id} seed={seed} objective={_fmt(objective, '.4f')}")

    def on_evaluated(self, cycle: int, phase: str, arms: list[dict[str, Any]]) -> None:
        self._stop_progress()

    def on_verdicts(self, cycle: int, items: list[dict[str, Any]]) -> None:
        for i, v in enumerate(items, 1):
            ci = v["ci"]
            ci_text = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
            colour = {"supported": "green", "refuted": "red"}.get(v["verdict"], "yellow")
            self.c.print(
                f"  H{i} [{colour}]{v['verdict']}[/{colour}] effect {_fmt(v['estimate'])} "
                f"{ci_text} Holm p={_fmt(v['p_adjusted'], '.3g')}"
            )

    def on_reproduction(self, cycle: int, hypothesis: str, outcome: str, estimate: float | None) -> None:
        self.c.print(f"  reproduction of {hypothesis}: {outcome} (effect {_fmt(estimate)})")

    def on_reproduction_request(self, cycle: int, request: str, claim: str, outcome: str) -> None:
        self.c.print(f"  reviewer's reproduction request {request} on {claim}: {escape(outcome)}")

    def on_claims(self, cycle: int, ids: list[str]) -> None:
        if ids:
            self.c.print(f"  claims recorded: {', '.join(ids)}")

    def on_incumbent(self, hypothesis: str, changes: list[dict[str, Any]], objective: float | None) -> None:
        moved = ", ".join(f"{c['factor']}={c.get('to_label', c['to_value'])}" for c in changes)
        self.c.print(f"  [bold]new incumbent[/bold]: {moved} (objective {_fmt(objective, '.4f')})")

    def on_cycle_end(
        self,
        cycle: int,
        incumbent_objective: float | None,
        trials: int,
        stop: str | None,
        best_screened: float | None = None,
    ) -> None:
        self._stop_progress()
        tail = f"; stopping: {stop}" if stop else ""
        self.c.print(
            f"  certified incumbent {_fmt(incumbent_objective, '.4f')}, best screened "
            f"{_fmt(best_screened, '.4f')}; {trials} trials so far{tail}"
        )

    def on_screened(self, cycle: int, items: list[dict[str, Any]], incumbent_objective: float | None) -> None:
        self._stop_progress()
        shown = ", ".join(_fmt(i["objective"], ".4f") for i in items[:6])
        self.c.print(
            f"  screened {len(items)} config(s), one seed each, no claims: {shown}"
            f" (certified incumbent {_fmt(incumbent_objective, '.4f')})"
        )

    def on_certification_look(
        self, cycle: int, look: int, hypotheses: list[str], deferred: bool = False
    ) -> None:
        self._stop_progress()
        if deferred:
            self.c.print(f"  undecided earlier, again the best: resumed at look {look} with more seeds")
        else:
            self.c.print(f"  undecided: look {look} adds seeds for {len(hypotheses)} change(s)")

    def on_final(self, summary: dict[str, Any]) -> None:
        self._stop_progress()


def final_table(campaign: Campaign, hypotheses: list[Hypothesis]) -> Table:
    table = Table(title=f"campaign {campaign.id}: {campaign.name}")
    for col in ("cycle", "change", "verdict", "effect [95% CI]", "Holm p", "reproduction", "claim"):
        table.add_column(col, no_wrap=col in ("claim", "effect [95% CI]"))
    for h in hypotheses:
        a = h.analysis
        effect = f"{a['estimate']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]" if "ci_low" in a else "-"
        change = ", ".join(f"{c.factor}: {c.from_value} -> {c.to_value}" for c in h.changes)
        colour = {"supported": "green", "refuted": "red"}.get(h.verdict, "yellow")
        verdict: str = "cancelled (budget)" if h.verdict == "cancelled" else h.verdict
        raw = a.get("looks")
        looks: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if isinstance(looks.get("of"), int) and looks["of"] > 1 and "look" in looks:
            # which look of the plan decided it (a deferred one resumed an earlier test)
            verdict += f" (look {looks['look']}/{looks['of']}{', deferred' if looks.get('deferred') else ''})"
        table.add_row(
            str(h.cycle),
            change,
            f"[{colour}]{verdict}[/{colour}]",
            effect,
            _fmt(a.get("p_adjusted"), ".3g"),
            h.reproduction,
            h.claim_id or "-",
        )
    return table


def _short(value: Any) -> str:
    """A config value for a table cell: a code module's sha256 as its first 12 characters."""
    text = str(value)
    return text[:12] if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text) else text


def incumbent_table(campaign: Campaign) -> Table:
    # the search space, plus each code point the incumbent or baseline sets (code_<point>:
    # a module's hash; the factors are added for planning and are not in the spec's space)
    code = sorted(
        k
        for k in {*campaign.incumbent, *campaign.baseline}
        if k.startswith("code_")
        and (campaign.incumbent.get(k) or "none") != (campaign.baseline.get(k) or "none")
    )
    space = [*campaign.spec.search_space, *code]
    table = Table(title="incumbent vs baseline")
    table.add_column("")
    for name in space:
        table.add_column(name)
    table.add_column(f"val {campaign.spec.objective.metric}")
    table.add_column(f"test {campaign.spec.objective.metric}")
    test = campaign.summary.get("test", {})
    for label, cfg, val in (
        ("baseline", campaign.baseline, campaign.baseline_objective),
        ("incumbent", campaign.incumbent, campaign.incumbent_objective),
    ):
        table.add_row(
            label,
            *[_short(cfg.get(n, "none")) for n in space],
            _fmt(val, ".4f"),
            _fmt(test.get(label, {}).get("objective"), ".4f"),
        )
    screened = campaign.summary.get("best_screened")
    if screened:  # what the search believes (not certified), beside what the campaign claims
        table.add_row(
            "best screened",
            *[_short(screened["config"].get(n, "")) for n in space],
            _fmt(screened["objective"], ".4f"),
            "-",
        )
    effect = test.get("effect")
    if effect:
        table.caption = (
            f"test-split gain {effect['estimate']:+.4f} "
            f"(95% CI {effect['ci_low']:+.4f} to {effect['ci_high']:+.4f}, "
            f"{effect['n_cases']} held-out cases, touched once)"
        )
    return table


def test_report_table(campaign: Campaign) -> Table | None:
    """The test split, once, per metric: overall, per class and per site, baseline vs
    incumbent (final fresh-seed runs)."""
    report = campaign.summary.get("test_report") or {}
    base, inc = report.get("baseline") or {}, report.get("incumbent") or {}
    if not base and not inc:
        return None
    table = Table(title="test split (touched once): baseline -> incumbent")
    table.add_column("metric")
    table.add_column("where")
    table.add_column("baseline")
    table.add_column("incumbent")
    for metric in sorted(set(base) | set(inc)):
        b, i = base.get(metric, {}), inc.get(metric, {})
        table.add_row(metric, "all", _fmt(b.get("overall"), ".4f"), _fmt(i.get("overall"), ".4f"))
        for group in ("per_class", "per_site"):
            keys = sorted(set(b.get(group, {})) | set(i.get(group, {})))
            for key in keys:
                label = ("class " if group == "per_class" else "site ") + key
                table.add_row(
                    "", label, _fmt(b.get(group, {}).get(key), ".4f"), _fmt(i.get(group, {}).get(key), ".4f")
                )
    return table
