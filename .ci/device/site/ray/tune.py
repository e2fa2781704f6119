"""Stand-in for ray.tune (see ray/__init__.py here): importable, with nothing in it."""
