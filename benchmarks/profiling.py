"""Where a process spends its time during a measurement: py-spy samples, summed by function."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

SAMPLE_RATE = 100
_LINE_NUMBER = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Hotspot:
    """A function and its share of the samples: on top of the stack, and anywhere on it."""

    function: str
    own: float
    total: float


def py_spy() -> Path:
    """The py-spy executable (a dev dependency of CallFS).

    Raises:
        RuntimeError: py-spy is not installed.
    """
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return beside
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (make install)")
    return Path(found)


class Recording:
    """``py-spy record`` attached to ``pid`` from enter to exit, written as collapsed stacks."""

    def __init__(self, pid: int, output: Path) -> None:
        self.pid = pid
        self.output = output
        self.seconds = 0.0
        self._started = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    def gil_share(self, samples: int) -> float:
        """The share of the recording during which some thread held the GIL."""
        return samples / (SAMPLE_RATE * self.seconds) if self.seconds else 0.0

    def __enter__(self) -> Self:
        command = [str(py_spy()), "record", "--pid", str(self.pid), "--rate", str(SAMPLE_RATE)]
        # --gil: only the thread holding the GIL is sampled, so the profile shows where the
        # interpreter's (single core of) CPU goes, not threads parked in a wait.
        command += ["--gil", "--format", "raw", "--output", str(self.output)]
        log = self.output.with_suffix(".log").open("wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        time.sleep(1.0)  # py-spy reads the target's memory layout before it samples
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.seconds = time.monotonic() - self._started
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _function(frame: str) -> str:
    """``read (callfs/backends/s3.py:120)`` → ``read (callfs/backends/s3.py)``, path shortened."""
    frame = _LINE_NUMBER.sub(")", frame)
    name, _, location = frame.partition(" (")
    for marker in ("site-packages/", "/src/", "/services/", "/lib/python3."):
        if marker in location:
            location = location.split(marker, 1)[1]
            if marker == "/lib/python3.":
                location = location.split("/", 1)[-1]
            break
    return f"{name} ({location}" if location else name


@dataclass(frozen=True)
class Profile:
    """Samples counted per function: on top of the stack (own) and anywhere on it (total)."""

    samples: int
    own: Counter[str]
    total: Counter[str]

    @classmethod
    def read(cls, collapsed: Path) -> Profile:
        """Tally py-spy's raw (collapsed stacks) output; an absent file is an empty profile."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        samples = 0
        lines = collapsed.read_text(errors="replace").splitlines() if collapsed.exists() else []
        for line in lines:
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_function(frame) for frame in stack.split(";")]
            samples += count
            own[frames[-1]] += count
            for function in set(frames):
                total[function] += count
        return cls(samples, own, total)

    def _hotspot(self, function: str) -> Hotspot:
        return Hotspot(
            function, self.own[function] / self.samples, self.total[function] / self.samples
        )

    def by_own(self, top: int = 15) -> list[Hotspot]:
        """The ``top`` functions by time spent in their own code."""
        return [self._hotspot(function) for function, _ in self.own.most_common(top)]

    def by_total(self, top: int = 15) -> list[Hotspot]:
        """The ``top`` functions by time spent in them or what they call."""
        return [self._hotspot(function) for function, _ in self.total.most_common(top)]
