"""One entry point per reader-study step for both designs (quartets, single images), dispatching on the pack's
design, for callers that do not care which it is (the analysis screen). A pack is named by id, by folder, or
None for the newest pack of either design.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.study import Study


def design(study: Study, pack: str | Path | None = None) -> str:
    """'single' or 'quartets'."""
    from core.reader_study.single_pack import design_of  # imported on use: loads numpy, PIL (start-up cost)

    return design_of(study, pack)


def import_any(study: Study, path: Path | str, pack: str | Path | None = None, *,
               simulated: bool = False) -> dict[str, Any]:
    """Import a Qualtrics export into the pack (the newest when None) with that pack's design's importer."""
    # imported on use: each importer loads numpy and the pack code (start-up cost)
    from core.reader_study.responses import import_ratings
    from core.reader_study.single_responses import import_single_ratings

    importer = import_single_ratings if design(study, pack) == "single" else import_ratings
    return importer(study, path, pack, simulated=simulated)


def analyze_any(study: Study, pack: str | Path | None = None, *, kappa_coding: str = "source",
                **kw: Any) -> dict[str, Any]:
    """Analyse a pack with its design's analysis (`kappa_coding` only applies to quartets)."""
    # imported on use: the analyses load scipy and statsmodels (start-up cost)
    from core.reader_study.analysis import analyze
    from core.reader_study.single_analysis import analyze_single

    if design(study, pack) == "single":
        return analyze_single(study, pack, **kw)
    return analyze(study, pack, kappa_coding=kappa_coding, **kw)


def latest_any(study: Study, pack: str | None = None) -> dict[str, Any] | None:
    """The latest analysis of the pack (or of the newest pack of either design); single-image results carry
    ``design: "single"``."""
    # imported on use: the analyses load scipy (start-up cost)
    from core.reader_study.analysis import latest_analysis
    from core.reader_study.single_analysis import latest_single_analysis

    if design(study, pack) == "single":
        return latest_single_analysis(study, pack)
    return latest_analysis(study, pack)


def list_all_packs(study: Study) -> list[dict[str, Any]]:
    """Every pack of the study, newest first, with its design."""
    # imported on use: the pack modules load numpy and PIL (start-up cost)
    from core.reader_study.pack import list_packs
    from core.reader_study.single_pack import list_single_packs

    rows = [{**p, "design": "quartets"} for p in list_packs(study)]
    rows += [{**p, "design": "single"} for p in list_single_packs(study)]
    return sorted(rows, key=lambda p: (str(p["created_at"]), p["id"]), reverse=True)
