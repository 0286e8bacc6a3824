"""Reusable widgets: image preview, ..."""
