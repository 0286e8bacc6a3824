"""The real set: reading source radiographs, polarity/orientation detectors, ingest, split and overrides."""
