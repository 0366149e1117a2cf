import pytest

from tests.factories import make_tiny_model
from tests.integration.stack import Stack, need, postgres_available, redis_available


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", input_size=48, grayscale=True)


@pytest.fixture
def make_stack(tmp_path, tiny_model_file):
    stacks = []

    def make(backend: str, **extra_env) -> Stack:
        if backend == "services":
            need(postgres_available(), "PostgreSQL at 127.0.0.1:5432")
            need(redis_available(), "Redis at 127.0.0.1:6379")
        stack = Stack(tmp_path / backend, backend, tiny_model_file, {k: str(v) for k, v in extra_env.items()})
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
