"""TuneBOHB that survives a kill -9: its own module so that the class pickles by reference
(Tune stores the searcher with the experiment) and hpbandster loads only when BOHB is used."""

from __future__ import annotations

from typing import Any

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
