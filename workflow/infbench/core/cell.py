"""The cell: one model, backend, precision, device, image size and batch size (the unit of the grid)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """One measurement of the grid."""

    model: str
    backend: str
    precision: str
    device: str
    image_size: int
    batch_size: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW shape of one batch."""
        return (self.batch_size, 3, self.image_size, self.image_size)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.backend}/{self.precision}/{self.device}/{self.image_size}x{self.batch_size}"
