"""Code hypotheses on the host: the static checks refuse what cannot run, the store keeps
modules content-addressed and immutable, the shipped moves pass and behave, and the local
runtime refuses untrusted code without starting a job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medloop.core.code import MAX_SOURCE_BYTES, source_sha256
from medloop.core.errors import NotFoundError, SpecError
from medloop.engine.code import CodeStore, check_source, library, trusted_hashes

VALID = '''
"""Keep the prediction as it is."""
import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    return np.asarray(label_map)
'''


def test_every_shipped_code_move_passes_the_checks() -> None:
    moves = library()
    assert {"largest_component", "flip_tta", "cldice_loss", "warmup_cosine"} <= set(moves)
    for name, source in moves.items():
        check = check_source(source)
        assert check.ok, (name, check.problems)
    assert len(trusted_hashes()) == len(moves)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (VALID.replace("return np", "return (np"), "syntax error"),
        (VALID.replace("import numpy as np", "import socket\nimport numpy as np"), "imports 'socket'"),
        (VALID.replace("import numpy as np", "import os\nimport numpy as np"), "imports 'os'"),
        (VALID.replace("import numpy as np", "from subprocess import run\nimport numpy as np"), "subprocess"),
        (VALID.replace("return np.asarray(label_map)", "return __import__('os').system('id')"), "__import__"),
        (VALID.replace("return np.asarray(label_map)", "return open('/out/result.json', 'w')"), "open"),
        (VALID.replace("return np.asarray(label_map)", "return ().__class__.__bases__"), "__bases__"),
        (VALID.replace("return np.asarray(label_map)", "return eval('1')"), "eval"),
        (VALID.replace('EXTENSION_POINT = "postprocess"', ""), "no EXTENSION_POINT"),
        (VALID.replace('"postprocess"', '"optimizer"'), "is not one of"),
        (VALID.replace("def postprocess(label_map, spacing, labels)", "def postprocess(x)"), "must take"),
        (VALID.replace("def postprocess(", "def post_process("), "no top-level function postprocess"),
        (
            VALID.replace("import numpy as np", "from . import helpers\nimport numpy as np"),
            "relative imports",
        ),
        (VALID + "#" * MAX_SOURCE_BYTES, "the limit is"),
    ],
)
def test_checks_refuse_modules_that_must_not_run(source: str, problem: str) -> None:
    check = check_source(source)
    assert not check.ok
    assert any(problem in p for p in check.problems), check.problems


def test_a_point_mismatch_is_named() -> None:
    check = check_source(VALID, point="loss")
    assert check.problems == ["EXTENSION_POINT is 'postprocess', expected 'loss'"]


def test_store_is_content_addressed_read_only_and_detects_tampering(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code")
    module = store.put(VALID, name="identity", author="alice", baseline=VALID.replace("asarray", "array"))
    assert module.sha256 == source_sha256(VALID)
    assert module.point == "postprocess" and not module.trusted
    assert module.rationale == "Keep the prediction as it is."
    assert "-    return np.array(label_map)" in module.diff
    assert store.put(VALID, name="again", author="bob").name == "identity"  # immutable once kept
    assert [m.sha256 for m in store.modules()] == [module.sha256]
    path = tmp_path / "code" / f"{module.sha256}.py"
    assert path.stat().st_mode & 0o222 == 0
    path.chmod(0o644)
    path.write_text(VALID + "\n# altered\n")
    with pytest.raises(SpecError, match="no longer matches its hash"):
        store.get(module.sha256)
    with pytest.raises(NotFoundError):
        store.get("0" * 64)
    with pytest.raises(SpecError, match="imports 'os'"):
        store.put(VALID.replace("import numpy", "import os\nimport numpy"), name="bad", author="eve")


def test_library_moves_are_trusted_and_staged_read_only(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code")
    modules = store.add_library()
    assert all(m.trusted and m.author == "medloop-library" for m in modules)
    staging = tmp_path / "staging"
    staging.mkdir()
    shas = sorted(m.sha256 for m in modules[:2])
    folder = store.stage(shas, staging)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.py" for s in shas)
    assert store.stage(list(reversed(shas)), staging) == folder  # same set, same folder
    assert all(p.stat().st_mode & 0o222 == 0 for p in folder.iterdir())


def _load(name: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": f"move_{name}"}
    exec(compile(library()[name], name, "exec"), namespace)  # the test runs a shipped move directly
    return namespace


def test_largest_component_removes_false_positive_blobs() -> None:
    pm = _load("largest_component")["postprocess"]
    label = np.zeros((20, 20, 1), dtype=np.uint8)
    label[2:10, 2:10] = 1  # organ
    label[15:17, 15:17] = 1  # false-positive blob
    label[12:14, 2:4] = 2  # another class, one component
    out = pm(label, (1.0, 1.0, 1.0), {"background": 0, "liver": 1, "spleen": 2})  # type: ignore[operator]
    assert int((out == 1).sum()) == 64 and int((out == 2).sum()) == 4
    assert out[16, 16, 0] == 0


def test_flip_tta_is_exact_for_a_flip_equivariant_predictor() -> None:
    import torch

    tta = _load("flip_tta")["tta"]
    image = torch.rand(1, 1, 6, 5, 4)
    predict = lambda x: torch.softmax(torch.cat([x, -x], dim=1), dim=1)  # noqa: E731
    out = tta(predict, image)  # type: ignore[operator]
    assert torch.allclose(out, predict(image), atol=1e-6)


def test_warmup_cosine_schedule_shape() -> None:
    lr = _load("warmup_cosine")["lr_factor"]
    values = [lr(step, 200) for step in range(200)]  # type: ignore[operator]
    assert values[0] == pytest.approx(0.1) and max(values) == pytest.approx(1.0)
    assert values[-1] < 0.01 and values.index(max(values)) == 9


def test_cldice_loss_gives_finite_gradients() -> None:
    import torch

    build = _load("cldice_loss")["build_loss"]
    loss_fn = build(None, False)  # type: ignore[operator]
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 16, 16))
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None and torch.isfinite(logits.grad).all()
