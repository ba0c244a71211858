"""Each test starts with an empty cache and no compiled policy in this process: the policy
version mirror lives in the cache, and test databases reuse organization ids."""

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_policy_caches() -> Iterator[None]:
    from policies.selectors import forget_compiled_policies

    cache.clear()
    forget_compiled_policies()
    yield
    forget_compiled_policies()
