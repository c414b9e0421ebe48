"""How busy the GPU is while a block of code runs: `nvidia-smi` sampled in the background.

    with BusySampler() as busy:
        ...                              # the work
    print(busy.describe())               # "GPU busy 84% (median of 37 samples, 71-97%)"

`utilization.gpu` is the share of the last sample period in which a kernel ran: a card that
waits on kernel launches from the host reads low however small its kernels are. Where there is
no nvidia-smi (a CPU machine), the sampler records nothing and says so.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from types import TracebackType

SAMPLE_MS = 200  # nvidia-smi's own loop period


class BusySampler:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> BusySampler:
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            self.process = subprocess.Popen(
                [*query, f"-lms={SAMPLE_MS}"], stdout=subprocess.PIPE, text=True
            )
            self.reader = threading.Thread(target=self.read, daemon=True)
            self.reader.start()
        return self

    def read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().isdigit():  # the first GPU's figure
                self.samples.append(float(line))

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def describe(self) -> str:
        if not self.samples:
            return "GPU busy: not sampled (no nvidia-smi here)"
        low, high = min(self.samples), max(self.samples)
        return (
            f"GPU busy {self.median:.0f}% (median of {len(self.samples)} samples, "
            f"{low:.0f}-{high:.0f}%)"
        )
