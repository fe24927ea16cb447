"""Memory of a cell, never negative: `None` (with the reason) wherever it cannot be measured.

* device (`device_peak_mib`), every backend alike: the rise of NVML's device-level used memory from
  just before the backend loads (the process's CUDA context already up) to the most seen after
  loading, after the inputs are placed and during the energy window. It includes library
  workspaces, allocator caches and lazily loaded kernels, so backends compare on one footing. It is
  device-wide: another process allocating at the same time inflates it, one freeing memory can make
  it negative — then it is `None` with a note, never a negative number or a made-up 0;
* device, beside it (`allocator_peak_mib`): the runtime's own allocator peak where it has one
  (PyTorch's `max_memory_allocated`, reset before loading so a graph capture or a compilation
  counts) — what the tensors needed, without the cache's slack;
* host: peak resident set size of the cell's process (getrusage of the child, in bench.py).
"""

from __future__ import annotations

from infbench.measure.nvml import Nvml

MiB = 2**20


def clamp_delta_mib(before_bytes: int | None, peak_bytes: int | None) -> tuple[float | None, str | None]:
    """(peak − before in MiB, None) or (None, why): never a negative figure."""
    if before_bytes is None or peak_bytes is None:
        return None, "device memory in use could not be read"
    delta = peak_bytes - before_bytes
    if delta < 0:
        return None, (
            f"device memory in use fell by {-delta / MiB:.1f} MiB during the cell (another process freed memory): "
            "the cell's own use cannot be told apart"
        )
    return delta / MiB, None


def nonnegative_mib(value: float | None) -> float | None:
    """A MiB figure as recorded: None stays None, a negative value (which no reading can be) becomes None."""
    if value is None:
        return None
    value = float(value)
    return value if value >= 0 else None


def host_peak_mib(ru_maxrss_kib: int | float | None) -> float | None:
    """getrusage's ru_maxrss (KiB on Linux) in MiB; None where the kernel reports nothing."""
    if not ru_maxrss_kib or ru_maxrss_kib <= 0:
        return None
    return ru_maxrss_kib / 1024


class DeviceMemory:
    """NVML device-level used memory around session creation and the timed run of one cell."""

    def __init__(self, nvml: Nvml | None, note: str | None = None):
        self.nvml = nvml
        self.note = note
        self.before: int | None = None
        self.marks: dict[str, int | None] = {}
        self.processes_before: int | None = None

    def baseline(self) -> None:
        if self.nvml is not None:
            self.before = self.nvml.used_bytes()
            self.processes_before = self.nvml.process_count()

    def mark(self, label: str) -> None:
        if self.nvml is not None:
            self.marks[label] = self.nvml.used_bytes()

    def peak_bytes(self, sampled_peak: int | None = None) -> int | None:
        values = [v for v in [*self.marks.values(), sampled_peak] if v is not None]
        return max(values) if values else None

    def section(self, allocator_peak_mib: float | None, sampled_peak: int | None = None) -> dict:
        """The device part of a result's `memory` section."""
        out = {
            "device_peak_mib": None,
            "device_method": None,
            "device_used_delta_mib": None,
            "device_used_before_mib": None if self.before is None else self.before / MiB,
            "device_used_marks_mib": {k: (None if v is None else v / MiB) for k, v in self.marks.items()},
            "device_note": None,
        }
        notes = []
        if self.nvml is None:
            notes.append(self.note or "NVML unavailable")
        else:
            delta, why = clamp_delta_mib(self.before, self.peak_bytes(sampled_peak))
            out["device_used_delta_mib"] = delta
            if why:
                notes.append(why)
            if self.processes_before and self.processes_before > 1:
                notes.append(
                    f"{self.processes_before} processes held the GPU: the device-level delta may include theirs"
                )
        out["allocator_peak_mib"] = nonnegative_mib(allocator_peak_mib)
        if out["device_used_delta_mib"] is not None:
            out["device_peak_mib"], out["device_method"] = out["device_used_delta_mib"], "nvml device used delta"
        out["device_note"] = "; ".join(notes) or None
        return out


def cpu_section() -> dict:
    return {
        "device_peak_mib": None,
        "device_method": None,
        "device_used_delta_mib": None,
        "allocator_peak_mib": None,
        "device_note": "CPU cell: no device memory apart from the host's",
    }
