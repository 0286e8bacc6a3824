"""The embedded demo: its stages, phantom radiographs, a simulated reviewer and simulated raters."""
