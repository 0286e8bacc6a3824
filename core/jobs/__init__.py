"""Jobs: the runner inside a job's process, the registry of kinds, control from outside, launching, live views."""
