"""The chain seed file: the packaged one loads; a bad one is one ConfigError naming the file
and the place, never its content (an RPC URL may carry a provider key)."""

from pathlib import Path

import pytest

from chainflow.core.errors import ConfigError
from chainflow.domain.chains.seed import load_seed

PROVIDER_KEY = "a1b2c3d4e5f6a1b2c3d4e5f6"
ENTRY = (
    "{chain_id: 8453, name: Base, native_symbol: ETH, eip1559: true, confirmations: 10, "
    "block_time_s: 2"
)


def _seed(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(text)
    return path


def test_the_packaged_seed_loads_under_the_api_rules() -> None:
    seeds = load_seed()
    assert 31337 in {seed.chain_id for seed in seeds}
    assert all(not seed.enabled or seed.rpc_urls for seed in seeds)


def test_a_file_with_an_entry_loads(tmp_path: Path) -> None:
    (seed,) = load_seed(_seed(tmp_path, f"chains:\n  - {ENTRY}}}\n"))
    assert (seed.chain_id, seed.rpc_urls, seed.enabled) == (8453, [], False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"chains: [{ENTRY}, rpc_urls: [https://x.io/{PROVIDER_KEY}\n", "not valid YAML (line"),
        (f"chains:\n  - {ENTRY}, rpc_urls: [7, 'https://x.io/{PROVIDER_KEY}']}}\n", "rpc_urls.0"),
        (f"chains:\n  - {ENTRY}, name: '{'n' * 101}'}}\n", "chains[0].name"),
        (f"chains:\n  - {ENTRY}, chain_id: {2**53}}}\n", "chains[0].chain_id"),
        (f"chains:\n  - {ENTRY}, {PROVIDER_KEY}: 1}}\n", "chains[0] has an unknown field"),
        (f"- {PROVIDER_KEY}\n", "must be a mapping with a `chains:` list"),
        ("chains: " + "[" * 100 + "]" * 100 + "\n", "nests deeper than 32 levels"),
    ],
)
def test_a_bad_file_is_one_config_error_without_its_content(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _seed(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_seed(path)
    assert str(path) in raised.value.detail
    assert message in raised.value.detail
    assert PROVIDER_KEY not in raised.value.detail
