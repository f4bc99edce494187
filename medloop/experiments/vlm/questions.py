"""Question templates of the dataset-to-VQA recipe (after GMAI-VL-5.5M): from one labelled
slice, drafts of multiple-choice items with their category fields, plus a caption.

Task (granularity): organ_recognition (contour): which structure is outlined;
structure_presence (image): is structure X visible (negatives from slices or image halves
without it); modality_recognition (image); laterality (contour): is the outlined structure
on the patient's left or right; size_comparison (mask): which of two structures is larger.
Every answer is computed from the label map, never guessed. Randomness (which structure,
which view, which distractors) comes only from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.experiments.vlm.render import RED, outline, to_rgb

TASKS = ("organ_recognition", "structure_presence", "modality_recognition", "laterality", "size_comparison")
MODALITIES = ("CT", "MRI", "X-ray", "Ultrasound", "PET")
# Names that make plausible wrong options next to a dataset's own labels.
STRUCTURE_POOL = (
    "liver",
    "spleen",
    "kidney",
    "pancreas",
    "stomach",
    "gallbladder",
    "aorta",
    "urinary bladder",
    "lung",
    "heart",
    "prostate",
    "esophagus",
    "duodenum",
    "adrenal gland",
    "vertebra",
)
# Keyword -> clinical department, first match wins (cardiac before brain: "ventricle").
_DEPARTMENTS = (
    (("heart", "myocard", "atrium", "aorta", "vena", "artery", "vessel"), "cardiology"),
    (("brain", "glioma", "ventricle", "hippocamp", "cerebell", "matter", "csf", "tumor"), "neurology"),
    (
        ("liver", "spleen", "pancrea", "stomach", "gallbladder", "duoden", "esophag", "bowel", "colon"),
        "gastroenterology",
    ),
    (("kidney", "bladder", "prostate", "adrenal", "ureter"), "urology"),
    (("lung", "airway", "trachea", "nodule", "bronch"), "pulmonology"),
    (("bone", "vertebra", "rib", "femur", "spine"), "orthopedics"),
)
# A structure counts as present with at least this many pixels (and this share of the view).
MIN_PIXELS = 6
MIN_SHARE = 0.001
# Laterality is asked only when the centroid is this far (share of the width) off the midline.
MIDLINE_MARGIN = 0.08
# Size comparison only between structures whose areas differ by at least this ratio.
SIZE_RATIO = 1.25


@dataclass(frozen=True)
class SliceView:
    grey: NDArray[np.uint8]  # (rows, cols), radiological display
    labels: NDArray[np.int64]  # (rows, cols) label values
    names: dict[int, str]  # label value -> readable structure name (background excluded)
    modality: str  # one of MODALITIES, or the channel name


@dataclass(frozen=True)
class Draft:
    task: str
    granularity: str
    department: str
    question: str
    correct: str
    distractors: list[str]
    image: NDArray[np.uint8]  # (rows, cols, 3) RGB


def readable(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def modality_of(channel_name: str) -> str:
    name = channel_name.strip().upper()
    if name == "CT" or name.startswith("CT"):
        return "CT"
    if any(key in name for key in ("MR", "T1", "T2", "FLAIR", "ADC", "DWI", "PD")):
        return "MRI"
    if "PET" in name:
        return "PET"
    if name in ("US", "ULTRASOUND"):
        return "Ultrasound"
    if any(key in name for key in ("X-RAY", "XRAY", "CR", "DX")):
        return "X-ray"
    return channel_name.strip()


def department_of(structure: str) -> str:
    lowered = structure.lower()
    for keys, department in _DEPARTMENTS:
        if any(key in lowered for key in keys):
            return department
    return "radiology"


def _present(view: SliceView, labels: NDArray[np.int64]) -> dict[str, int]:
    """Structure name -> pixel count, for structures large enough to be seen."""
    floor = max(MIN_PIXELS, int(MIN_SHARE * labels.size))
    counts: dict[str, int] = {}
    for value, name in view.names.items():
        n = int(np.count_nonzero(labels == value))
        if n >= floor:
            counts[name] = counts.get(name, 0) + n
    return counts


def _components(mask: NDArray[np.bool_]) -> list[NDArray[np.bool_]]:
    """Connected components of a mask, largest first."""
    from scipy.ndimage import label

    labelled, n = label(mask)
    comps = [labelled == i for i in range(1, n + 1)]
    return sorted(comps, key=lambda c: -int(c.sum()))


def _distractors(correct: str, pool: list[str], n: int, rng: np.random.Generator) -> list[str]:
    choices = sorted({p for p in pool if p != correct})
    if len(choices) <= n:
        return choices
    picked = rng.choice(len(choices), size=n, replace=False)
    return [choices[int(i)] for i in sorted(picked)]


def _views(view: SliceView) -> dict[str, tuple[slice, slice]]:
    rows, cols = view.labels.shape
    full = slice(0, None)
    return {
        "full": (full, full),
        "left half": (full, slice(0, cols // 2)),
        "right half": (full, slice(cols // 2, None)),
        "upper half": (slice(0, rows // 2), full),
        "lower half": (slice(rows // 2, None), full),
    }


def organ_recognition(view: SliceView, rng: np.random.Generator, n_options: int) -> Draft | None:
    present = _present(view, view.labels)
    if not present:
        return None
    name = sorted(present)[int(rng.integers(len(present)))]
    values = [v for v, n in view.names.items() if n == name]
    component = _components(np.isin(view.labels, values))[0]
    pool = sorted({*view.names.values(), *STRUCTURE_POOL})
    return Draft(
        task="organ_recognition",
        granularity="contour",
        department=department_of(name),
        question="Which structure is outlined in red?",
        correct=name,
        distractors=_distractors(name, pool, n_options - 1, rng),
        image=to_rgb(view.grey, [(outline(component), RED)]),
    )


def structure_presence(view: SliceView, rng: np.random.Generator) -> Draft | None:
    yes: list[tuple[str, str]] = []
    no: list[tuple[str, str]] = []
    floor = max(MIN_PIXELS, int(MIN_SHARE * view.labels.size))
    for view_name, (rs, cs) in _views(view).items():
        crop = view.labels[rs, cs]
        for value, name in sorted(view.names.items()):
            n = int(np.count_nonzero(crop == value))
            if n >= floor:
                yes.append((view_name, name))
            elif n == 0:
                no.append((view_name, name))
    want_yes = bool(rng.random() < 0.5)
    candidates = (yes or no) if want_yes else (no or yes)
    if not candidates:
        return None
    view_name, name = sorted(set(candidates))[int(rng.integers(len(set(candidates))))]
    answer = "yes" if (view_name, name) in yes else "no"
    rs, cs = _views(view)[view_name]
    return Draft(
        task="structure_presence",
        granularity="image",
        department=department_of(name),
        question=f"Is the {name} visible in this image?",
        correct=answer,
        distractors=["no" if answer == "yes" else "yes"],
        image=to_rgb(np.ascontiguousarray(view.grey[rs, cs]), []),
    )


def modality_recognition(view: SliceView, rng: np.random.Generator, n_options: int) -> Draft:
    return Draft(
        task="modality_recognition",
        granularity="image",
        department="radiology",
        question="Which imaging modality was used to acquire this image?",
        correct=view.modality,
        distractors=_distractors(view.modality, list(MODALITIES), n_options - 1, rng),
        image=to_rgb(view.grey, []),
    )


def laterality(view: SliceView, rng: np.random.Generator) -> Draft | None:
    cols = view.labels.shape[1]
    floor = max(MIN_PIXELS, int(MIN_SHARE * view.labels.size))
    candidates: list[tuple[str, NDArray[np.bool_], str]] = []
    for value, name in sorted(view.names.items()):
        for comp in _components(view.labels == value):
            if int(comp.sum()) < floor:
                continue
            centre = float(np.nonzero(comp)[1].mean())
            offset = (centre - (cols - 1) / 2) / cols
            if abs(offset) >= MIDLINE_MARGIN:
                # columns run from the patient's right to the patient's left
                candidates.append((name, comp, "left" if offset > 0 else "right"))
    if not candidates:
        return None
    name, comp, side = candidates[int(rng.integers(len(candidates)))]
    return Draft(
        task="laterality",
        granularity="contour",
        department=department_of(name),
        question=f"Is the {name} outlined in red on the patient's left or right side?",
        correct=side,
        distractors=["right" if side == "left" else "left"],
        image=to_rgb(view.grey, [(outline(comp), RED)]),
    )


def size_comparison(view: SliceView, rng: np.random.Generator) -> Draft | None:
    present = _present(view, view.labels)
    names = sorted(present)
    pairs = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if max(present[a], present[b]) >= SIZE_RATIO * min(present[a], present[b])
    ]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    larger, smaller = (a, b) if present[a] > present[b] else (b, a)
    return Draft(
        task="size_comparison",
        granularity="mask",
        department=department_of(larger),
        question=f"Which structure occupies the larger area in this image, the {a} or the {b}?",
        correct=larger,
        distractors=[smaller],
        image=to_rgb(view.grey, []),
    )


def drafts_for(
    view: SliceView, rng: np.random.Generator, *, tasks: tuple[str, ...], n_options: int
) -> list[Draft]:
    """One draft per task that this slice can support, in TASKS order."""
    makers: dict[str, Any] = {
        "organ_recognition": lambda: organ_recognition(view, rng, n_options),
        "structure_presence": lambda: structure_presence(view, rng),
        "modality_recognition": lambda: modality_recognition(view, rng, n_options),
        "laterality": lambda: laterality(view, rng),
        "size_comparison": lambda: size_comparison(view, rng),
    }
    out = []
    for task in TASKS:
        if task in tasks:
            draft = makers[task]()
            if draft is not None:
                out.append(draft)
    return out


def caption_for(view: SliceView) -> str | None:
    """A factual caption from the label map: modality, structures by size, sides."""
    present = _present(view, view.labels)
    if not present:
        return None
    by_size = sorted(present, key=lambda n: (-present[n], n))
    parts = [f"Axial {view.modality} image showing the {', '.join(by_size)}."]
    parts.append(f"The largest labelled structure is the {by_size[0]}.")
    cols = view.labels.shape[1]
    sides = []
    for value, name in sorted(view.names.items()):
        mask = view.labels == value
        if not mask.any() or len(_components(mask)) != 1:
            continue
        offset = (float(np.nonzero(mask)[1].mean()) - (cols - 1) / 2) / cols
        if abs(offset) >= MIDLINE_MARGIN:
            sides.append(f"the {name} lies on the patient's {'left' if offset > 0 else 'right'}")
    if sides:
        parts.append("; ".join(sides).capitalize() + ".")
    return " ".join(parts)
