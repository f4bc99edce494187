"""Campaign files from the form or the API -> a validated spec (errors per field, with the
YAML line), and campaigns run in the background as `python -m medloop campaign resume ID`
subprocesses, so a request never waits for training and a server restart does not kill
a campaign (LangGraph checkpoints let the subprocess pick up where it stopped).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medloop.core import safeyaml
from medloop.core.errors import ConflictError, NotFoundError, SpecError
from medloop.core.records import utcnow
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, format_validation_error, parse_campaign_spec
from medloop.web.errors import FieldError, InvalidInput

MAX_YAML_BYTES = 200_000
# Form fields that override the YAML (dotted path -> label); errors show next to them.
FORM_FIELDS: dict[str, str] = {
    "name": "Name",
    "goal": "Goal",
    "dataset.path": "Dataset folder",
    "budget.max_trials": "Max trials",
    "budget.max_cycles": "Max cycles",
    "budget.max_wall": "Max wall time",
    "executor.kind": "Executor",
    "planner.kind": "Planner",
}
_SOURCE = "campaign"
_YAML_LINE = re.compile(rf"^{_SOURCE}: line (?P<line>\d+):")
_PREFIXED = re.compile(rf"^{_SOURCE}: (?:(?P<field>[\w.\[\]-]+): )?(?P<msg>.*)$", re.S)


# ---------------------------------------------------------------- YAML with line numbers


def _scalar(text: str) -> Any:
    """A form value as YAML reads it ('12' -> 12, '8m' stays a string)."""
    return safeyaml.scalar(text)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def parse_spec(text: str, overrides: dict[str, str] | None = None) -> CampaignSpec:
    """Validate a campaign YAML (plus form overrides). Raises InvalidInput listing every
    offending field with its YAML line, or nothing. The dataset (or replay table) must exist."""
    try:
        doc = safeyaml.parse(text, source=_SOURCE, max_bytes=MAX_YAML_BYTES)
    except SpecError as exc:
        match = _YAML_LINE.match(exc.message)
        line = int(match.group("line")) if match else None
        problem = exc.message.removeprefix(f"{_SOURCE}: ")
        raise InvalidInput(str(exc), [FieldError(field="yaml", message=problem, line=line)]) from None
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            "the campaign file must be a mapping of keys",
            [FieldError(field="yaml", message="expected `key: value` lines at the top level", line=1)],
        )
    from_form: set[str] = set()
    for path, value in (overrides or {}).items():
        if path not in FORM_FIELDS:
            raise InvalidInput(
                f"{path} cannot be set from the form",
                [FieldError(field=path, message=f"settable fields: {', '.join(FORM_FIELDS)}")],
            )
        if value is not None and str(value).strip():
            _set_path(data, path, _scalar(str(value)) if path not in ("name", "goal") else str(value))
            from_form.add(path)  # the form's value: no YAML line to point at
    try:
        CampaignSpec.model_validate(data)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
            # Discriminated unions add the variant name to the path; drop it.
            loc = [p for p in loc if p not in ("categorical", "int", "float")]
            field = ".".join(loc)
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see examples/ for the allowed keys)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            line = doc.line_for(field) if field and field not in from_form else None
            details.append(FieldError(field=field, message=msg, line=line))
        raise InvalidInput(format_validation_error(exc, _SOURCE), details) from None
    try:
        return parse_campaign_spec(data, source=_SOURCE, check_dataset=True)
    except SpecError as exc:
        match = _PREFIXED.match(exc.message)
        field = (match.group("field") or "") if match else ""
        msg = match.group("msg") if match else exc.message
        line = doc.line_for(field) if field and field not in from_form else None
        detail = FieldError(field=field, message=msg, line=line)
        raise InvalidInput(exc.message, [detail]) from None


# ---------------------------------------------------------------- examples


def list_examples(folder: Path | None) -> dict[str, Path]:
    """name -> file for the campaign examples the form offers."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.is_file()}


def example_text(folder: Path | None, name: str) -> str:
    examples = list_examples(folder)
    if name not in examples:
        known = ", ".join(examples) or "none"
        raise InvalidInput(
            f"no example named {name!r}", [FieldError(field="example", message=f"known examples: {known}")]
        )
    return examples[name].read_text()


# ---------------------------------------------------------------- background runs


class Launcher:
    """Starts `medloop campaign resume ID` subprocesses and remembers their pids in
    `<workspace>/web/runs/<campaign>.json`, so a second launch of a running campaign is
    refused even from another server process."""

    def __init__(self, settings: Settings, *, cwd: Path | None = None) -> None:
        self.settings = settings
        self.cwd = (cwd or Path.cwd()).resolve()
        self.runs_dir = settings.workspace_dir / "web" / "runs"
        self._lock = threading.Lock()

    def _pid_file(self, campaign_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_]+", campaign_id):
            raise NotFoundError(f"campaign {campaign_id} not found")
        return self.runs_dir / f"{campaign_id}.json"

    def running_pid(self, campaign_id: str) -> int | None:
        """The pid of this campaign's live subprocess, or None."""
        path = self._pid_file(campaign_id)
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        # A recycled pid runs something else; a zombie has finished.
        if campaign_id.encode() not in cmdline or state == "Z":
            return None
        return pid

    def log_path(self, campaign_id: str) -> Path:
        return self.runs_dir / f"{campaign_id}.log"

    def start(self, campaign_id: str) -> int:
        """Run (or continue) the campaign in a subprocess; returns its pid at once."""
        with self._lock:
            pid = self.running_pid(campaign_id)
            if pid is not None:
                raise ConflictError(
                    f"campaign {campaign_id} is already running (pid {pid})",
                    hint="pause or stop it first",
                )
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            # The subprocess must see the server's settings, however they were given.
            for name, value in self.settings.model_dump().items():
                if value is not None:
                    env[f"MEDLOOP_{name.upper()}"] = str(value)
            env["MEDLOOP_WORKSPACE"] = str(self.settings.workspace_dir)
            command = [sys.executable, "-m", "medloop", "campaign", "resume", campaign_id]
            with self.log_path(campaign_id).open("ab") as log:
                log.write(f"--- {utcnow()} {' '.join(command[1:])}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    command,
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the server; not hit by its Ctrl-C
                )
            tmp = self._pid_file(campaign_id).with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": proc.pid, "started_at": utcnow(), "command": command}))
            tmp.replace(self._pid_file(campaign_id))
            # Reap the child when it ends so it does not linger as a zombie.
            threading.Thread(target=proc.wait, name=f"reap-{campaign_id}", daemon=True).start()
            return proc.pid
