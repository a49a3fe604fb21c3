"""The URL check that webhook URLs and RPC URLs share."""

import pytest

from chainflow.core.urls import check_http_url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        # Blanks outside ASCII that NFKC folds to a space: stored, then never reachable (review).
        ("http://exa\u00a0mple.com/hook", "control"),
        ("http://exa\u3000mple.com/hook", "control"),
        ("http://h\u2002x.example/hook", "control"),
        ("http://a..example.com/hook", "IDNA"),
        ("http://" + "a" * 64 + ".example/hook", "IDNA"),
    ],
)
def test_a_host_no_request_can_reach_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://bücher.example/hook",
        "http://127.0.0.1:8545",
        "http://[::1]:8545/",
        "https://example.com./x?a=1",
        "https://rpc.example/v3/%20key",
    ],
)
def test_a_reachable_host_is_kept(url: str) -> None:
    assert check_http_url(url) == url
