"""hypertune.py's command line with test hooks that act on what the run has reached, never on
how fast this machine reaches it (tests/test_faults.py starts it as hypertune.py is started):

    python tests/driver.py [HOOKS] -- ARGS...       # = python hypertune.py ARGS...

--after-trials K --then ACTION --record FILE
    At the end of the first step of Tune's loop that sees K trials ended (Tune's own statuses,
    the same step in which the K-th ended), write the ended trials' folder names to FILE (JSON),
    then ACTION: SIGINT or SIGTERM to this process (Ctrl-C, kill); SIGKILL to this process
    after saving the experiment state to storage, as Tune does every second (kill -9 at a known
    state); or hold: wait until the file --go names exists, while the run holds its folder.
--meet N --barrier DIR
    Each caller of the experiment-folder claim waits at DIR until N callers arrived, then
    claims (runs started at once really meet there).
--refit-interrupt-at-epoch K
    SIGINT to this process as the refit starts epoch K (K - 1 epochs trained and saved).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.execution.tune_controller import TuneController

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hypertune
import hypertune
import src.pipeline
import src.refit
from src.results import trial_folder_name

WAIT_S = 240  # a hook that waits this long for the test's side fails the run instead


def arrive(barrier: Path, callers: int) -> None:
    """Wait until `callers` processes (this one included) have arrived at `barrier`."""
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + WAIT_S
    while len(list(barrier.iterdir())) < callers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"driver: the other callers never arrived at {barrier}")
        time.sleep(0.001)


def after_trials(ended: int, then: str, record: Path, go: Path | None) -> None:
    """The hook of --after-trials, on TuneController.step (Tune's loop calls it until the
    experiment ends or is interrupted)."""
    step = TuneController.step
    fired = False

    def hooked_step(controller: TuneController) -> None:
        nonlocal fired
        step(controller)
        done = [t for t in controller.get_trials() if t.status in ("TERMINATED", "ERROR")]
        if fired or len(done) < ended:
            return
        fired = True
        names = sorted(trial_folder_name(t.trial_id) for t in done)
        staged = record.with_suffix(".tmp")
        staged.write_text(json.dumps(names))
        staged.replace(record)
        if then == "hold":
            assert go is not None
            deadline = time.monotonic() + WAIT_S
            while not go.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"driver: {go} never appeared")
                time.sleep(0.05)
            return
        if then == "SIGKILL":
            controller.checkpoint(force=True, wait=True)
        os.kill(os.getpid(), signal.Signals[then])

    TuneController.step = hooked_step  # type: ignore[method-assign]


def meet_at_claim(callers: int, barrier: Path) -> None:
    claimed = src.pipeline.claimed

    def met(folder: Path, new: bool) -> Any:
        arrive(barrier, callers)
        return claimed(folder, new)

    src.pipeline.claimed = met  # type: ignore[assignment]


def refit_interrupt_at(epoch: int) -> None:
    train_epoch: Callable[..., float] = src.refit.train_epoch
    started = 0

    def interrupted_epoch(*args: Any, **kwargs: Any) -> float:
        nonlocal started
        started += 1
        if started == epoch:
            os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt, as Ctrl-C in a terminal
        return train_epoch(*args, **kwargs)

    src.refit.train_epoch = interrupted_epoch  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="tests/driver.py")
    parser.add_argument("--after-trials", type=int)
    parser.add_argument("--then", choices=["SIGINT", "SIGTERM", "SIGKILL", "hold"])
    parser.add_argument("--record", type=Path)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--meet", type=int)
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--refit-interrupt-at-epoch", type=int)
    hooks = parser.parse_args(argv[:split])
    if hooks.after_trials is not None:
        after_trials(hooks.after_trials, hooks.then, hooks.record, hooks.go)
    if hooks.meet is not None:
        meet_at_claim(hooks.meet, hooks.barrier)
    if hooks.refit_interrupt_at_epoch is not None:
        refit_interrupt_at(hooks.refit_interrupt_at_epoch)
    return hypertune.main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
