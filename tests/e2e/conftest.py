from tests.support.fixtures import *  # noqa: F403  (fixtures are shared with tests/contract)
