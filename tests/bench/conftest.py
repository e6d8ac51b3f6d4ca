"""The engine's test fixtures the speed bench's tests use too."""

from tests.engine.conftest import one_torch_thread, tiny_domains  # noqa: F401 (fixtures)
