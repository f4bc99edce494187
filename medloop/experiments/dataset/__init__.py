"""Dataset I/O for the host and the job (numpy + nibabel only; no torch).

The host uses it to read, check, fingerprint, split and stage datasets; the job uses the
image readers and writers.
"""

from medloop.experiments.dataset.fingerprint import fingerprint_summary
from medloop.experiments.dataset.imageio import Volume, read_volume, write_like
from medloop.experiments.dataset.manifest import build_manifest, held_out_labels, stage_inputs
from medloop.experiments.dataset.nnunet import Case, NnunetDataset, dataset_checksum, read_dataset
from medloop.experiments.dataset.phantom import synth_phantom

__all__ = [
    "Case",
    "NnunetDataset",
    "Volume",
    "build_manifest",
    "dataset_checksum",
    "fingerprint_summary",
    "held_out_labels",
    "read_dataset",
    "read_volume",
    "stage_inputs",
    "synth_phantom",
    "write_like",
]
