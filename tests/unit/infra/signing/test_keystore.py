"""Envelope encryption: round trips, tampering, wrong keys, rotation, key parsing, redaction."""

import base64
import dataclasses
import hashlib
import hmac
import uuid

import pytest

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.keystore import (
    SECP256K1_ORDER,
    DecryptionFailed,
    InvalidMasterKey,
    InvalidPrivateKey,
    MasterKey,
    SealedKey,
    rewrap,
    seal,
    unseal,
    validate_private_key,
)

KEY_HEX = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEY = SecretBytes(bytes.fromhex(KEY_HEX))
WALLET_ID = uuid.UUID("0b6a1c43-4a55-4c5e-9a43-8d3e1e6f5a01")
ADDRESS = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
OTHER_ADDRESS = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


def aad(wallet_id: uuid.UUID = WALLET_ID, address: str = ADDRESS) -> bytes:
    return f"chainflow/wallet/v1|{wallet_id}|{address}".encode()


def flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


def key_material_in(text: str | bytes, key: bytes) -> bool:
    """True if `text` holds the key raw, as hex (either case) or as base64."""
    haystack = text.encode() if isinstance(text, str) else text
    forms = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    return any(form in haystack for form in forms)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def sealed(master: MasterKey) -> SealedKey:
    return seal(KEY, master=master, associated_data=aad())


class TestMasterKey:
    def test_from_b64_reads_the_key_it_was_given(self) -> None:
        raw = bytes(range(32))
        key = MasterKey.from_b64(base64.b64encode(raw).decode())
        assert key.secret.reveal() == raw

    def test_from_b64_ignores_surrounding_whitespace(self) -> None:
        text = base64.b64encode(bytes(range(32))).decode()
        assert MasterKey.from_b64(f"  {text}\n").key_id == MasterKey.from_b64(text).key_id

    @pytest.mark.parametrize("text", ["not base64 at all!!", "QUJD=ZZZ", "é" * 44, ""])
    def test_from_b64_rejects_bad_base64_without_echoing_it(self, text: str) -> None:
        with pytest.raises(InvalidMasterKey) as caught:
            MasterKey.from_b64(text)
        assert caught.value.code == "invalid_master_key"
        if text:
            assert text not in str(caught.value)

    @pytest.mark.parametrize("size", [16, 31, 33, 64])
    def test_from_b64_rejects_the_wrong_length_without_echoing_it(self, size: int) -> None:
        text = base64.b64encode(bytes(range(7, 7 + size))).decode()
        with pytest.raises(InvalidMasterKey, match=f"decodes to {size} bytes, need 32") as caught:
            MasterKey.from_b64(text)
        assert text not in str(caught.value)

    def test_constructor_rejects_the_wrong_length(self) -> None:
        with pytest.raises(InvalidMasterKey, match="31 bytes, need 32"):
            MasterKey(SecretBytes(bytes(31)))

    def test_generate_makes_distinct_keys(self) -> None:
        assert MasterKey.generate().secret != MasterKey.generate().secret

    def test_key_id_is_the_truncated_hmac_of_the_label(self, master: MasterKey) -> None:
        label = b"chainflow master key id v1"
        digest = hmac.new(master.secret.reveal(), label, hashlib.sha256).digest()
        assert master.key_id == digest[:8].hex()

    def test_key_id_does_not_reveal_the_key(self, master: MasterKey) -> None:
        assert master.key_id not in master.secret.reveal().hex()

    def test_repr_and_str_hide_the_key(self, master: MasterKey) -> None:
        for text in (repr(master), str(master), f"{master}", repr([master])):
            assert not key_material_in(text, master.secret.reveal())
            assert master.key_id in text


class TestSeal:
    def test_round_trip_returns_the_private_key(self, master: MasterKey) -> None:
        sealed = seal(KEY, master=master, associated_data=aad())
        assert unseal(sealed, master=master, associated_data=aad()) == KEY

    def test_records_the_master_key_id(self, master: MasterKey, sealed: SealedKey) -> None:
        assert sealed.master_key_id == master.key_id

    def test_blobs_are_nonce_ciphertext_and_tag(self, sealed: SealedKey) -> None:
        assert len(sealed.ciphertext) == 12 + 32 + 16
        assert len(sealed.wrapped_data_key) == 12 + 32 + 16

    def test_each_call_uses_a_fresh_data_key_and_nonces(self, master: MasterKey) -> None:
        first = seal(KEY, master=master, associated_data=aad())
        second = seal(KEY, master=master, associated_data=aad())
        assert first.ciphertext != second.ciphertext
        assert first.wrapped_data_key != second.wrapped_data_key
        assert first.ciphertext[:12] != second.ciphertext[:12]

    def test_blobs_do_not_contain_the_private_key(self, sealed: SealedKey) -> None:
        assert not key_material_in(sealed.ciphertext, KEY.reveal())
        assert not key_material_in(sealed.wrapped_data_key, KEY.reveal())

    def test_blobs_do_not_contain_the_master_key(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        assert not key_material_in(sealed.ciphertext, master.secret.reveal())
        assert not key_material_in(sealed.wrapped_data_key, master.secret.reveal())

    def test_repr_shows_only_the_master_key_id(self, sealed: SealedKey) -> None:
        assert repr(sealed) == f"SealedKey(master_key_id={sealed.master_key_id})"

    def test_sealed_key_is_immutable(self, sealed: SealedKey) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            sealed.master_key_id = "other"  # type: ignore[misc]


class TestUnseal:
    @pytest.mark.parametrize("index", [0, 11, 12, 43, 44, 59], ids=lambda i: f"byte{i}")
    def test_tampered_ciphertext_fails(
        self, master: MasterKey, sealed: SealedKey, index: int
    ) -> None:
        tampered = dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext, index))
        with pytest.raises(DecryptionFailed, match="encrypted key failed authentication"):
            unseal(tampered, master=master, associated_data=aad())

    @pytest.mark.parametrize("index", [0, 11, 12, 43, 44, 59], ids=lambda i: f"byte{i}")
    def test_tampered_wrapped_data_key_fails(
        self, master: MasterKey, sealed: SealedKey, index: int
    ) -> None:
        blob = flip(sealed.wrapped_data_key, index)
        tampered = dataclasses.replace(sealed, wrapped_data_key=blob)
        with pytest.raises(DecryptionFailed, match="wrapped data key failed authentication"):
            unseal(tampered, master=master, associated_data=aad())

    @pytest.mark.parametrize("size", [0, 5, 12, 27])
    def test_truncated_ciphertext_fails(
        self, master: MasterKey, sealed: SealedKey, size: int
    ) -> None:
        tampered = dataclasses.replace(sealed, ciphertext=sealed.ciphertext[:size])
        with pytest.raises(DecryptionFailed):
            unseal(tampered, master=master, associated_data=aad())

    def test_another_wallet_id_fails(self, master: MasterKey, sealed: SealedKey) -> None:
        with pytest.raises(DecryptionFailed):
            unseal(sealed, master=master, associated_data=aad(wallet_id=uuid.uuid4()))

    def test_another_address_fails(self, master: MasterKey, sealed: SealedKey) -> None:
        with pytest.raises(DecryptionFailed):
            unseal(sealed, master=master, associated_data=aad(address=OTHER_ADDRESS))

    def test_a_data_key_swapped_in_from_another_row_fails(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        other = seal(KEY, master=master, associated_data=aad(address=OTHER_ADDRESS))
        swapped = dataclasses.replace(sealed, wrapped_data_key=other.wrapped_data_key)
        with pytest.raises(DecryptionFailed):
            unseal(swapped, master=master, associated_data=aad())

    def test_wrong_master_key_names_both_key_ids(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        wrong = MasterKey.generate()
        expected = f"sealed under master key {master.key_id}, configured key is {wrong.key_id}"
        with pytest.raises(DecryptionFailed) as caught:
            unseal(sealed, master=wrong, associated_data=aad())
        assert str(caught.value) == expected

    def test_wrong_master_key_error_holds_no_key_material(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        wrong = MasterKey.generate()
        with pytest.raises(DecryptionFailed) as caught:
            unseal(sealed, master=wrong, associated_data=aad())
        shown = f"{caught.value!s} {caught.value!r} {caught.value.extra!r}"
        for secret in (KEY.reveal(), master.secret.reveal(), wrong.secret.reveal()):
            assert not key_material_in(shown, secret)

    def test_a_forged_master_key_id_still_fails(self, sealed: SealedKey) -> None:
        wrong = MasterKey.generate()
        forged = dataclasses.replace(sealed, master_key_id=wrong.key_id)
        with pytest.raises(DecryptionFailed, match="wrapped data key failed authentication"):
            unseal(forged, master=wrong, associated_data=aad())

    def test_failure_has_a_stable_code_and_no_cause(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        tampered = dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext, 20))
        with pytest.raises(DecryptionFailed) as caught:
            unseal(tampered, master=master, associated_data=aad())
        assert caught.value.code == "decryption_failed"
        assert caught.value.__suppress_context__


class TestRewrap:
    def test_decrypts_under_the_new_key(self, master: MasterKey, sealed: SealedKey) -> None:
        new = MasterKey.generate()
        moved = rewrap(sealed, old=master, new=new, associated_data=aad())
        assert unseal(moved, master=new, associated_data=aad()) == KEY

    def test_no_longer_decrypts_under_the_old_key(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        moved = rewrap(sealed, old=master, new=MasterKey.generate(), associated_data=aad())
        with pytest.raises(DecryptionFailed, match=f"configured key is {master.key_id}"):
            unseal(moved, master=master, associated_data=aad())

    def test_old_wrapped_key_with_a_forged_id_fails_under_the_new_key(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        new = MasterKey.generate()
        moved = rewrap(sealed, old=master, new=new, associated_data=aad())
        forged = dataclasses.replace(moved, wrapped_data_key=sealed.wrapped_data_key)
        with pytest.raises(DecryptionFailed):
            unseal(forged, master=new, associated_data=aad())

    def test_keeps_the_ciphertext_unchanged(self, master: MasterKey, sealed: SealedKey) -> None:
        new = MasterKey.generate()
        moved = rewrap(sealed, old=master, new=new, associated_data=aad())
        assert moved.ciphertext == sealed.ciphertext
        assert moved.master_key_id == new.key_id

    def test_with_the_wrong_old_key_fails(self, sealed: SealedKey) -> None:
        with pytest.raises(DecryptionFailed, match="sealed under master key"):
            rewrap(
                sealed, old=MasterKey.generate(), new=MasterKey.generate(), associated_data=aad()
            )

    def test_with_the_wrong_associated_data_fails(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        with pytest.raises(DecryptionFailed):
            rewrap(
                sealed,
                old=master,
                new=MasterKey.generate(),
                associated_data=aad(address=OTHER_ADDRESS),
            )


class TestValidatePrivateKey:
    @pytest.mark.parametrize(
        "raw",
        [
            KEY_HEX,
            "0x" + KEY_HEX,
            "0X" + KEY_HEX.upper(),
            f"  0x{KEY_HEX}\n",
            f"\t{KEY_HEX}\r\n",
            ("0x" + KEY_HEX + "\n").encode(),
            bytes.fromhex(KEY_HEX),
        ],
        ids=["bare", "0x", "0X-upper", "spaces-newline", "tab-crlf", "hex-bytes", "raw-bytes"],
    )
    def test_accepts(self, raw: str | bytes) -> None:
        assert validate_private_key(raw) == KEY

    @pytest.mark.parametrize(
        "key",
        [1, SECP256K1_ORDER - 1],
        ids=["one", "n-minus-1"],
    )
    def test_accepts_the_ends_of_the_range(self, key: int) -> None:
        assert validate_private_key(key.to_bytes(32, "big")).reveal() == key.to_bytes(32, "big")

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ("", "private key is empty"),
            ("   \n", "private key is empty"),
            ("0x", "private key is empty"),
            ("zz" + KEY_HEX[2:], "must be hex"),
            (KEY_HEX[:30] + " " + KEY_HEX[31:], "must be hex"),
            ("0x0x" + KEY_HEX[4:], "must be hex"),
            ("éa" + KEY_HEX[2:], "must be hex"),
            (b"\xff\xfe" + KEY_HEX[2:].encode(), "must be hex"),
            (KEY_HEX[:63], "too short: 63 hex digits, need 64"),
            ("0x" + KEY_HEX[:40], "too short: 40 hex digits, need 64"),
            (bytes.fromhex(KEY_HEX)[:31], "must be hex"),
            (KEY_HEX + "a", "too long: 65 hex digits, need 64"),
            ("0x" + KEY_HEX * 2, "too long: 128 hex digits, need 64"),
            ("0" * 64, "private key is zero"),
            (bytes(32), "private key is zero"),
            (f"{SECP256K1_ORDER:064x}", "not below the secp256k1 group order"),
            ("f" * 64, "not below the secp256k1 group order"),
            (b"\xff" * 32, "not below the secp256k1 group order"),
        ],
        ids=[
            "empty",
            "whitespace",
            "prefix-only",
            "not-hex",
            "inner-space",
            "double-prefix",
            "non-ascii",
            "non-utf8-bytes",
            "short",
            "prefixed-short",
            "31-raw-bytes",
            "long",
            "prefixed-long",
            "zero",
            "zero-raw-bytes",
            "order",
            "above-order",
            "above-order-raw-bytes",
        ],
    )
    def test_rejects(self, raw: str | bytes, message: str) -> None:
        with pytest.raises(InvalidPrivateKey, match=message) as caught:
            validate_private_key(raw)
        assert caught.value.code == "invalid_private_key"
        shown = str(caught.value)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if text.strip():
            assert text.strip() not in shown
            assert text.strip()[-16:] not in shown
        if isinstance(raw, bytes) and raw:
            assert not key_material_in(shown, raw)

    def test_returns_secret_bytes_that_hide_the_key(self) -> None:
        key = validate_private_key(KEY_HEX)
        for text in (repr(key), str(key), f"{key}", repr([key])):
            assert not key_material_in(text, KEY.reveal())


class TestPreviousKeys:
    def test_a_row_under_the_previous_key_unseals_and_new_rows_seal_under_the_current(
        self, master: MasterKey, sealed: SealedKey
    ) -> None:
        ring = MasterKey.generate().with_previous(master)
        assert unseal(sealed, master=ring, associated_data=aad()) == KEY
        assert seal(KEY, master=ring, associated_data=aad()).master_key_id == ring.key_id

    def test_known_ids_are_the_key_and_its_previous_ones(self, master: MasterKey) -> None:
        older, newer = MasterKey.generate(), MasterKey.generate()
        ring = newer.with_previous(master.with_previous(older))
        assert ring.known_ids == {newer.key_id, master.key_id, older.key_id}
        assert ring.only().known_ids == {newer.key_id}

    def test_a_key_is_never_its_own_previous(self, master: MasterKey) -> None:
        assert master.with_previous(master).previous == ()

    def test_an_unknown_key_names_every_configured_id(self, sealed: SealedKey) -> None:
        ring = MasterKey.generate().with_previous(MasterKey.generate())
        with pytest.raises(DecryptionFailed, match=f"configured keys are {ring.key_id}, "):
            unseal(sealed, master=ring, associated_data=aad())

    def test_a_bad_key_file_is_named_not_echoed(self) -> None:
        with pytest.raises(InvalidMasterKey, match="invalid master key file x: not valid") as e:
            MasterKey.from_b64("secret!", source="master key file x")
        assert "secret!" not in str(e.value)
