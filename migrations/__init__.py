"""Alembic environment and revisions of the summary schema, shipped inside the package and run programmatically."""
