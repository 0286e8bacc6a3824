"""The project database: the only package that imports duckdb."""
