"""Task-based utility of synthetic images: the utility benchmark and the condition check (docs/guide/utility.md)."""
