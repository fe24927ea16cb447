"""GPU counters through NVML (nvidia-ml-py): utilisation, SM clock, power, energy, memory in use.

`Nvml.open()` finds the NVML device of the CUDA device a cell runs on (by UUID, then PCI bus id,
as PyTorch sees it: NVML numbers devices ignoring CUDA_VISIBLE_DEVICES). A `Sampler` thread reads
the counters every `interval_s`, only during a repetition's energy window (its throughput windows);
`summarize` turns its samples into the result's `nvml` section, so that every figure describes that one window:

* `gpu_util_pct`: mean of NVML's utilisation rate (percent of time a kernel was running over the
  driver's sample period), `mem_util_pct` likewise for memory traffic;
* `sm_clock_mhz`: mean SM clock over the window, and at the start of the timed rounds and the end of the window;
* `energy_j` from the total energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ) where the
  GPU has it, else from the power samples integrated over time (`energy_source` says which);
  `power_w` = energy over the window's length and `window_img_s` the window's own throughput, so
  `energy_mj_per_image` × `window_img_s` = `power_w` by construction (a mean of power samples
  would disagree: the counter integrates what the samples miss);
* `throttle_reasons`: the clock event reasons NVML reports at the end of the window.

The window is the repetition's throughput windows taken together (`timing.throughput_windows`, sized by
`bench.energy_policy` to last at least `bench.energy_window_s`): back-to-back batches whose image count is
known exactly, long enough for the energy counter, which the driver updates only every few tens of ms,
and the utilisation rate, averaged by the driver over its own sample period. Energy per image and the
throughput then describe the same batches.

Without NVML (no driver, no library, no GPU) every figure is `None` and `note` says why.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

# NVML clock event ("throttle") reason bits → names; idle and application-clock settings included.
THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}

FIELDS = (
    "gpu_util_pct",
    "mem_util_pct",
    "sm_clock_mhz",
    "sm_clock_mhz_start",
    "sm_clock_mhz_end",
    "power_w",
    "power_w_max",
    "window_img_s",
    "energy_j",
    "energy_mj_per_image",
    "images_per_joule",
    "energy_source",
    "temperature_c",
    "throttle_reasons",
    "throttle_mask",
    "window_s",
    "samples",
    "interval_s",
    "gpu",
    "note",
)


def empty(note: str) -> dict:
    """The `nvml` section with every figure null and the reason."""
    out = dict.fromkeys(FIELDS)
    out["note"] = note
    return out


def decode_throttle(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def _torch_device_ids(cuda_index: int) -> tuple[str | None, str | None]:
    """(NVML UUID, PCI bus id) of PyTorch's CUDA device `cuda_index`, where PyTorch can tell."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        props = torch.cuda.get_device_properties(cuda_index)
    except Exception:
        return None, None
    uuid = getattr(props, "uuid", None)
    uuid = f"GPU-{uuid}" if uuid is not None and not str(uuid).startswith("GPU-") else (str(uuid) if uuid else None)
    pci = None
    if getattr(props, "pci_bus_id", None) is not None:
        pci = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    return uuid, pci


class Nvml:
    """An NVML session on one device."""

    def __init__(self, pynvml, handle):
        self.pynvml = pynvml
        self.handle = handle

    @classmethod
    def open(cls, cuda_index: int = 0, use_torch: bool = True) -> tuple[Nvml | None, str | None]:
        """(session, None) or (None, why NVML cannot be used here)."""
        try:
            import pynvml
        except ImportError as exc:
            return None, f"NVML unavailable: nvidia-ml-py is not installed ({exc})"
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return None, f"NVML unavailable: {type(exc).__name__}: {exc}"
        try:
            uuid, pci = _torch_device_ids(cuda_index) if use_torch else (None, None)
            if uuid:
                try:
                    return cls(pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid)), None
                except Exception:
                    pass
            if pci:
                try:
                    return cls(pynvml, pynvml.nvmlDeviceGetHandleByPciBusId(pci)), None
                except Exception:
                    pass
            # CUDA_VISIBLE_DEVICES=2,3 → CUDA device 0 is NVML device 2 (numeric lists only).
            visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
            index = cuda_index
            if visible and cuda_index < len(visible):
                if visible[cuda_index].isdigit():
                    index = int(visible[cuda_index])
                else:
                    return cls(pynvml, pynvml.nvmlDeviceGetHandleByUUID(visible[cuda_index])), None
            if index >= pynvml.nvmlDeviceGetCount():
                pynvml.nvmlShutdown()
                return None, f"NVML unavailable: no NVML device {index}"
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)), None
        except Exception as exc:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass
            return None, f"NVML unavailable: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        try:
            self.pynvml.nvmlShutdown()
        except Exception:
            pass

    def _try(self, name: str, *args):
        try:
            return getattr(self.pynvml, name)(self.handle, *args)
        except Exception:
            return None

    def name(self) -> str | None:
        value = self._try("nvmlDeviceGetName")
        return value.decode() if isinstance(value, bytes) else value

    def used_bytes(self) -> int | None:
        """Device memory in use by every process (NVML's device-level 'used')."""
        info = self._try("nvmlDeviceGetMemoryInfo")
        return None if info is None else int(info.used)

    def total_bytes(self) -> int | None:
        info = self._try("nvmlDeviceGetMemoryInfo")
        return None if info is None else int(info.total)

    def process_count(self) -> int | None:
        procs = self._try("nvmlDeviceGetComputeRunningProcesses")
        return None if procs is None else len(procs)

    def energy_mj(self) -> int | None:
        return self._try("nvmlDeviceGetTotalEnergyConsumption")

    def sm_clock_mhz(self) -> int | None:
        return self._try("nvmlDeviceGetClockInfo", self.pynvml.NVML_CLOCK_SM)

    def throttle_mask(self) -> int | None:
        mask = self._try("nvmlDeviceGetCurrentClocksEventReasons")
        return mask if mask is not None else self._try("nvmlDeviceGetCurrentClocksThrottleReasons")

    def temperature_c(self) -> int | None:
        return self._try("nvmlDeviceGetTemperature", self.pynvml.NVML_TEMPERATURE_GPU)

    def sample(self) -> dict:
        util = self._try("nvmlDeviceGetUtilizationRates")
        power = self._try("nvmlDeviceGetPowerUsage")  # mW
        return {
            "t": time.perf_counter(),
            "gpu_util": None if util is None else util.gpu,
            "mem_util": None if util is None else util.memory,
            "sm_clock": self.sm_clock_mhz(),
            "power_w": None if power is None else power / 1000,
            "energy_mj": self.energy_mj(),
            "used": self.used_bytes(),
        }


class Sampler:
    """Reads `nvml.sample()` every `interval_s` in a background thread, between start() and stop().

    NVML calls go through ctypes, which releases the GIL while in the driver, so the thread
    barely disturbs the benchmark loop.
    """

    def __init__(self, nvml: Nvml, interval_s: float = 0.05):
        self.nvml = nvml
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self.throttle_mask = None
        self.temperature_c = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.nvml.sample())
            self._stop.wait(self.interval_s)

    def start(self) -> Sampler:
        self.samples.append(self.nvml.sample())
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.nvml.sample())
        self.throttle_mask = self.nvml.throttle_mask()
        self.temperature_c = self.nvml.temperature_c()
        return self

    @contextmanager
    def running(self):
        """Sampling for the duration of a `with` block."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def peak_used_bytes(self) -> int | None:
        used = [s["used"] for s in self.samples if s["used"] is not None]
        return max(used) if used else None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _interpolate(samples: list[dict], key: str, t: float) -> float | None:
    points = [(s["t"], s[key]) for s in samples if s[key] is not None]
    if not points:
        return None
    if t <= points[0][0]:
        return float(points[0][1])
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else float(v1)
    return float(points[-1][1])


def summarize(sampler: Sampler, start: float, end: float, images: int) -> dict:
    """The `nvml` section for the window [start, end] (perf_counter seconds) in which `images` were processed.

    Energy comes from the GPU's energy counter where it has one (interpolated at the window's
    edges), else from the power samples integrated over the window; mean utilisation, clock and
    power are over the samples inside the window.
    """
    out = empty(None)
    out["gpu"] = sampler.nvml.name()
    out["interval_s"] = sampler.interval_s
    inside = [s for s in sampler.samples if start <= s["t"] <= end]
    notes = []
    if len(inside) < 3:
        notes.append(f"only {len(inside)} NVML samples in the {end - start:.3f} s window: means are rough")
    out["window_s"] = round(end - start, 4)
    out["samples"] = len(inside)
    out["gpu_util_pct"] = _mean(s["gpu_util"] for s in inside)
    out["mem_util_pct"] = _mean(s["mem_util"] for s in inside)
    out["sm_clock_mhz"] = _mean(s["sm_clock"] for s in inside)
    # Clocks at the start and the end of the energy window.
    out["sm_clock_mhz_start"] = sampler.samples[0]["sm_clock"] if sampler.samples else None
    out["sm_clock_mhz_end"] = sampler.samples[-1]["sm_clock"] if sampler.samples else None
    powers = [s["power_w"] for s in inside if s["power_w"] is not None]
    out["power_w_max"] = max(powers) if powers else None

    energy_j = None
    e0, e1 = _interpolate(sampler.samples, "energy_mj", start), _interpolate(sampler.samples, "energy_mj", end)
    if e0 is not None and e1 is not None and e1 > e0:
        energy_j, out["energy_source"] = (e1 - e0) / 1000, "nvmlDeviceGetTotalEnergyConsumption"
    elif len(powers) >= 2:
        pts = [(s["t"], s["power_w"]) for s in inside if s["power_w"] is not None]
        energy_j = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(pts, pts[1:], strict=False))
        out["energy_source"] = "power samples integrated over time"
        if energy_j <= 0:
            energy_j = None
    if energy_j is None:
        notes.append("no energy counter and too few power samples")
    out["energy_j"] = energy_j
    window_s = end - start
    out["window_img_s"] = images / window_s if window_s > 0 else None
    if energy_j and window_s > 0:
        out["power_w"] = energy_j / window_s
    if energy_j and images > 0:
        out["energy_mj_per_image"] = energy_j * 1000 / images
        out["images_per_joule"] = images / energy_j
    out["throttle_mask"] = sampler.throttle_mask
    out["throttle_reasons"] = decode_throttle(sampler.throttle_mask)
    out["temperature_c"] = sampler.temperature_c
    out["note"] = "; ".join(notes) or None
    return out
