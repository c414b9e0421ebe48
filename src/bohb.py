"""BOHB that survives an interruption: its own module so that the classes pickle by reference
(Tune stores the searcher with the experiment) and hpbandster loads only when BOHB is used."""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandForBOHB
from ray.tune.search.bohb import TuneBOHB


class ResumableBOHB(TuneBOHB):
    """After a kill -9, Tune's saved experiment can hold a trial that the saved searcher never
    heard of (created after the searcher's last save); TuneBOHB then raises KeyError on its
    first result and the resume dies. Such a trial trains on; BOHB's model skips it."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.trial_to_params:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self.trial_to_params:
            super().on_trial_complete(trial_id, result, error)


class ResumableHyperBand(HyperBandForBOHB):
    """HyperBandForBOHB made resumable; Ray Tune 2.60 does not save a scheduler's state.

    - On --resume Tune hands every restored trial to on_trial_add, the finished ones too.
      HyperBandForBOHB put those into fresh brackets where they never report, so a bracket
      never reached its milestone and its paused trials waited forever (seen in tests).
      Finished trials now stay out; unfinished ones fill new brackets from their checkpoints.
    - A paused trial that a halving stops is never saved again by Tune (its actor is gone, the
      only path that marks a trial for saving); a resume took it for paused and trained it on.
      Marking it here, on its removal, saves it as terminated."""

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if trial.status not in (Trial.TERMINATED, Trial.ERROR):
            super().on_trial_add(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_remove(tune_controller, trial)
        tune_controller._mark_trial_to_checkpoint(trial)  # Tune calls this with its controller
