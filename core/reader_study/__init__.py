"""The reader study: blinded quartet packs, Qualtrics formats, preview, pack checks, responses, statistics,
analysis, report."""
