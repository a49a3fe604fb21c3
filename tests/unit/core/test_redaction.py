"""Generated key-shaped strings: scrubbed wherever they sit in free text or a JSON value, and
addresses read exactly (EIP-55 checked, never repaired)."""

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from chainflow.core.addresses import checksum_address, parse_wallet_ref
from chainflow.core.redaction import has_key_material, scrub_text, scrub_value

HEX = "0123456789abcdefABCDEF"
keys = st.text(alphabet=HEX, min_size=64, max_size=64)
prefixes = st.sampled_from(["", "0x", "0X"])
surroundings = st.text(max_size=20)  # any text, hex digits included


@given(key=keys, prefix=prefixes, before=surroundings, after=surroundings)
def test_a_key_anywhere_in_text_is_scrubbed(key: str, prefix: str, before: str, after: str) -> None:
    scrubbed = scrub_text(before + prefix + key + after)
    assert key.lower() not in scrubbed.lower()
    assert not has_key_material(scrubbed)


@given(key=keys, before=surroundings)
def test_a_key_anywhere_in_a_json_value_is_scrubbed(key: str, before: str) -> None:
    value = {"detail": before + key, "errors": [{"loc": ["body", key], "msg": [key]}], key: 1}
    scrubbed = repr(scrub_value(value))
    assert key.lower() not in scrubbed.lower()


@given(text=st.text(alphabet=HEX + "xX -", max_size=200))
def test_scrubbed_text_never_holds_key_material(text: str) -> None:
    assert not has_key_material(scrub_text(text))


def test_short_hex_is_kept() -> None:
    assert scrub_text("id 0xdeadbeef and a 40-digit " + "ab" * 20) == (
        "id 0xdeadbeef and a 40-digit " + "ab" * 20
    )


addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())


@given(address=addresses)
def test_lower_upper_and_checksummed_addresses_read_the_same(address: str) -> None:
    checksummed = str(to_checksum_address(address))
    upper = "0x" + address[2:].upper()
    assert {checksum_address(a) for a in (address, upper, checksummed)} == {checksummed}


@given(address=addresses, data=st.data())
def test_a_mixed_case_address_with_a_wrong_checksum_is_refused(
    address: str, data: st.DataObject
) -> None:
    checksummed = str(to_checksum_address(address))
    letters = [i for i, c in enumerate(checksummed) if i > 1 and c.isalpha()]
    if len(letters) < 2:  # flipping the only letter gives all-lower or all-upper: valid
        return
    i = data.draw(st.sampled_from(letters))
    wrong = checksummed[:i] + checksummed[i].swapcase() + checksummed[i + 1 :]
    body = wrong[2:]
    if body == body.lower() or body == body.upper():
        return  # the flip left one case only: all-lower and all-upper are valid
    with pytest.raises(ValueError, match="checksum"):
        checksum_address(wrong)


@pytest.mark.parametrize(
    "text", ["0X" + "ab" * 20, "ab" * 20, "0x" + "ab" * 19, "0x" + "ab" * 21, " 0x" + "ab" * 20]
)
def test_other_address_spellings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="0x followed by 40 hex digits"):
        checksum_address(text)


def test_wallet_refs() -> None:
    assert parse_wallet_ref("nothing") is None
    assert str(parse_wallet_ref("6f1c3a8e-2b9d-4d1e-9a7c-0e5b8f3d2a11")).startswith("6f1c")
    with pytest.raises(ValueError, match="0x followed by 40 hex digits"):
        parse_wallet_ref("0X" + "ab" * 20)
