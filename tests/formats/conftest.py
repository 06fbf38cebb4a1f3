"""Tests that need petastorm's own reader, which runs only on pyarrow 14 and numpy 1.x: collected
where petastorm imports (the `oldest` and `dbr-15.4` runtime profiles name them explicitly)."""
import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("petastorm") else ["test_*.py"]
