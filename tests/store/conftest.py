"""Store tests: the shared conformance suite gets pytest's assertion rewriting."""

import pytest

pytest.register_assert_rewrite("perdure.testing.conformance")
