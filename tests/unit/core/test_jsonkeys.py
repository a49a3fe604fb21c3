"""A key named twice is refused, and the refusal never echoes a secret-shaped key."""

import pytest

from chainflow.core.jsonkeys import DuplicateJsonKey, check_unique_keys

SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


class TestEcho:
    def test_a_key_named_twice_is_shown(self) -> None:
        with pytest.raises(DuplicateJsonKey) as refused:
            check_unique_keys(b'{"value": "1", "value": "10"}')
        assert refused.value.key == "value"
        assert str(refused.value) == "a JSON object has the key 'value' more than once"

    @pytest.mark.parametrize("key", [f"0x{SECRET}", SECRET, f"label-{SECRET}{SECRET}"])
    def test_a_key_shaped_like_a_private_key_is_redacted_whole(self, key: str) -> None:
        # Before: cut to 64 characters first, `0x` + 62 of its hex digits escaped redaction.
        with pytest.raises(DuplicateJsonKey) as refused:
            check_unique_keys(b'{"%s": 1, "%s": 2}' % (key.encode(), key.encode()))
        for shown in (refused.value.key, str(refused.value)):
            assert SECRET[:16] not in shown, shown
            assert "[redacted]" in shown

    def test_a_long_key_is_cut(self) -> None:
        key = "k" * 1000
        with pytest.raises(DuplicateJsonKey) as refused:
            check_unique_keys(b'{"%s": 1, "%s": 2}' % (key.encode(), key.encode()))
        assert refused.value.key == "k" * 64 + "…"
