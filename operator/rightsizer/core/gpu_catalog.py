"""The GPU models the recommendations know: memory, relative compute, rated power, MIG profiles.

Facts from NVIDIA datasheets and the MIG user guide. ``memory_mib`` is what GPU feature
discovery reports in the ``nvidia.com/gpu.memory`` label; ``fp16_tflops`` is dense FP16 tensor
throughput, used only to compare models roughly; MIG profile memory is the profile's nominal
fraction of the GPU's memory (A100/H100 slice memory in eighths, compute in sevenths; A30 in
quarters).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class MigProfile:
    name: str
    """As in the resource name ``nvidia.com/mig-<name>``, e.g. ``1g.10gb``."""
    compute_fraction: Fraction
    memory_fraction: Fraction


@dataclass(frozen=True)
class GpuModel:
    name: str
    family: str
    """Token of the ``nvidia.com/gpu.product`` label naming the chip, e.g. ``A100``."""
    memory_token: str | None
    """Token telling memory variants apart (``80GB``); None for the default variant."""
    memory_mib: int
    fp16_tflops: int
    rated_watts: int
    mig_profiles: tuple[MigProfile, ...] = ()

    def profile_memory_mib(self, profile: MigProfile) -> int:
        return int(self.memory_mib * profile.memory_fraction)

    def mig_profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.mig_profiles if p.name == name), None)


def _profiles(
    compute_total: int, memory_total: int, *entries: tuple[str, int, int]
) -> tuple[MigProfile, ...]:
    return tuple(
        MigProfile(name, Fraction(compute, compute_total), Fraction(memory, memory_total))
        for name, compute, memory in entries
    )


# A100-80GB and H100-80GB share profile names and slice sizes.
_80GB_MIG = _profiles(
    7,
    8,
    ("1g.10gb", 1, 1),
    ("1g.20gb", 1, 2),
    ("2g.20gb", 2, 2),
    ("3g.40gb", 3, 4),
    ("4g.40gb", 4, 4),
    ("7g.80gb", 7, 8),
)
_A100_40GB_MIG = _profiles(
    7,
    8,
    ("1g.5gb", 1, 1),
    ("1g.10gb", 1, 2),
    ("2g.10gb", 2, 2),
    ("3g.20gb", 3, 4),
    ("4g.20gb", 4, 4),
    ("7g.40gb", 7, 8),
)
_A30_MIG = _profiles(4, 4, ("1g.6gb", 1, 1), ("2g.12gb", 2, 2), ("4g.24gb", 4, 4))

CATALOG: tuple[GpuModel, ...] = (
    GpuModel("H100-80GB", "H100", None, 81559, 989, 700, _80GB_MIG),
    GpuModel("A100-80GB", "A100", "80GB", 81920, 312, 400, _80GB_MIG),
    GpuModel("A100-40GB", "A100", None, 40960, 312, 400, _A100_40GB_MIG),
    GpuModel("A30-24GB", "A30", None, 24576, 165, 165, _A30_MIG),
    GpuModel("A10-24GB", "A10", None, 23028, 125, 150),
    GpuModel("L4-24GB", "L4", None, 23034, 121, 72),
    GpuModel("T4-16GB", "T4", None, 15360, 65, 70),
)

_TOKEN = re.compile(r"[-_ ]+")


def find_gpu_model(product: str, catalog: Sequence[GpuModel] = CATALOG) -> GpuModel | None:
    """Map a product label (``NVIDIA-A100-SXM4-80GB``, ``Tesla-T4``) or a catalog name to a model.

    Returns None for a GPU the catalog does not know; recommendations then skip model changes.
    """
    for model in catalog:
        if product.strip().upper() == model.name.upper():
            return model
    tokens = {token.upper() for token in _TOKEN.split(product.strip()) if token}
    # Models with a memory token are more specific than their family's default variant.
    ordered = sorted(catalog, key=lambda m: m.memory_token is None)
    for model in ordered:
        if model.family.upper() in tokens and (model.memory_token is None or model.memory_token in tokens):
            return model
    return None
