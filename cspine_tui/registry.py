"""The one list of the app's screens: name, where the class lives, its dashboard key, title and description.

The app (cspine_tui/app.py), the dashboard and the help screen read it; it imports no screen, so none of them
imports another through it. A screen module is imported only when the screen is first opened.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScreenEntry:
    name: str
    target: str          # "module:Class"
    key: str             # key on the dashboard
    title: str
    description: str

    def load(self) -> Any:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)()


SCREENS: list[ScreenEntry] = [
    ScreenEntry("dashboard", "cspine_tui.screens.dashboard:DashboardScreen", "0", "Dashboard",
                "the study at a glance"),
    ScreenEntry("dataset", "cspine_tui.screens.dataset:DatasetScreen", "1", "Dataset",
                "the real set: splits, polarity, orientation, skipped files; override one image"),
    ScreenEntry("training", "cspine_tui.screens.training:TrainingScreen", "2", "Training",
                "start, pause, resume runs; live loss curve, validation loss, FID, steps/s, ETA"),
    ScreenEntry("sampling", "cspine_tui.screens.sampling:SamplingScreen", "3", "Sampling",
                "sample checkpoints (losses, FID, counts); follow runs; gallery of the newest images"),
    ScreenEntry("screening", "cspine_tui.screens.screening:ScreeningScreen", "4", "Screening",
                "accept or reject synthetic images by keyboard"),
    ScreenEntry("audit", "cspine_tui.screens.audit:AuditScreen", "5", "Memorization audit",
                "top real-synthetic pairs side by side; two blinded reviewers, kappa, adjudication"),
    ScreenEntry("survey", "cspine_tui.screens.survey:SurveyScreen", "6", "Reader study pack",
                "blinded quartets and the Qualtrics survey; browse quartets"),
    ScreenEntry("analysis", "cspine_tui.screens.analysis:AnalysisScreen", "7", "Reader study analysis",
                "import Qualtrics ratings; accuracy, kappa, Wilcoxon, violin plot, report"),
    ScreenEntry("jobs", "cspine_tui.screens.jobs:JobsScreen", "8", "Jobs",
                "every job with state, progress, trend and log tail; pause, cancel, resume"),
    ScreenEntry("utility", "cspine_tui.screens.utility:UtilityScreen", "9", "Utility",
                "real vs synthetic vs mixed training sets: learning curves, comparisons; condition checks"),
]
