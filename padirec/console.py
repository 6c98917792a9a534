"""The pipeline's console: one line per stage, what a stage prints kept in its log (cheap to import)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from padirec.runtime import output_to

CONSOLE_MODES = ("verbose", "bar", "quiet")


@dataclass
class StageLine:
    """What a stage says in one line when it ends."""

    text: str = ""


class Console:
    """The pipeline's console, in one of `CONSOLE_MODES`:

    - "verbose": a header per stage, then everything it prints (progress bars, Tune's tables, Ray's worker lines);
    - "bar" (the default): one live line per stage on a terminal (elapsed time and the stage log's latest line),
      then the stage's one-line result; what the stage printed goes to `logs/N-name.log` under the output directory;
    - "quiet": the same without the live line (what a job log or CI gets: also "bar" when stderr is no terminal).
    """

    def __init__(self, total: int, log_dir: Path, mode: str = "bar"):
        if mode not in CONSOLE_MODES:
            raise ValueError(f"console mode {mode!r}: expected one of {CONSOLE_MODES}")
        self.total, self.log_dir, self.mode, self.count = total, log_dir, mode, 0

    @property
    def quiet(self) -> bool:
        return self.mode != "verbose"

    @contextlib.contextmanager
    def stage(self, name: str, title: str) -> Iterator[StageLine]:
        self.count += 1
        line, started, label = StageLine(), time.perf_counter(), f"[{self.count}/{self.total}] {title}"
        if not self.quiet:
            print(f"== {self.count}/{self.total} {title}")
            yield line
            return
        log = self.log_dir / f"{self.count}-{name}.log"
        live = LiveLine(label, log) if self.mode == "bar" and sys.stderr.isatty() else contextlib.nullcontext()
        with live, output_to(log):
            yield line
        print(f"{label}: {line.text} ({time.perf_counter() - started:.0f} s)", flush=True)


class LiveLine:
    """One tqdm line on the terminal while a stage runs: its elapsed time and the last line its log got."""

    def __init__(self, label: str, log: Path, every_s: float = 0.5):
        self.label, self.log, self.every_s = label, log, every_s
        self.stop = threading.Event()

    def __enter__(self) -> LiveLine:
        # the terminal as it is now: the stage's own output is about to go to its log (fd 2 included)
        self.terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w")
        self.bar = tqdm(desc=self.label, file=self.terminal, bar_format="{desc} {elapsed}{postfix}", leave=False)
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()
        return self

    def _follow(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                text = self.log.read_bytes()[-2000:].decode(errors="replace")
            except OSError:
                text = ""
            last = next((t for t in reversed(re.split(r"[\r\n]", text)) if t.strip()), "")
            self.bar.set_postfix_str(re.sub(r"\x1b\[[0-9;]*m", "", last).strip()[:80], refresh=True)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.bar.close()
        self.terminal.close()
