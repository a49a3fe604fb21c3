"""Bounded, strict reads of operator files: never more than the limit, never a device or FIFO,
never a hang, and errors that name the file but not its content."""

import os
import time
from pathlib import Path

import pytest

from chainflow.infra.files import UnreadableFile, read_text_file

SECRET = "0x" + "ab" * 32


def test_reads_utf8_text_and_drops_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\n")
    assert read_text_file(path, what="key", max_bytes=100) == SECRET + "\n"


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    with path.open("wb") as handle:
        handle.truncate(64 * 1024**3)  # 64 GiB of holes: reading it whole would take minutes
    started = time.monotonic()
    with pytest.raises(UnreadableFile, match="larger than 4096 bytes"):
        read_text_file(path, what="key", max_bytes=4096)
    assert time.monotonic() - started < 1


def test_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "full"
    path.write_text("k" * 64)
    assert read_text_file(path, what="key", max_bytes=64) == "k" * 64


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_before_reading(device: str) -> None:
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_text_file(Path(device), what="key", max_bytes=4096)


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile, match=f"key file {fifo}: not a regular file"):
        read_text_file(fifo, what="key", max_bytes=4096)


def test_a_directory_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_text_file(tmp_path, what="key", max_bytes=4096)
    with pytest.raises(UnreadableFile, match="No such file or directory"):
        read_text_file(tmp_path / "missing", what="key", max_bytes=4096)


def test_binary_content_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(SECRET.encode() + b"\xff\x00\x9f")
    with pytest.raises(UnreadableFile) as raised:
        read_text_file(path, what="key", max_bytes=4096)
    assert raised.value.detail == f"key file {path} is not UTF-8 text"
    assert SECRET[2:] not in str(raised.value)
