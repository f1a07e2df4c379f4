"""Writing files: atomic, never through a link, never over a file it may not replace, one-line errors."""
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from fsr_jax import files
from fsr_jax.errors import FileReadError, FileWriteError


def test_a_write_lands_whole_and_leaves_no_temporary_file(tmp_path):
    files.write_text(tmp_path / "sub" / "a.json", "old")
    files.write_text(tmp_path / "sub" / "a.json", "new")
    assert (tmp_path / "sub" / "a.json").read_text() == "new"
    assert os.listdir(tmp_path / "sub") == ["a.json"]


def test_an_error_inside_the_block_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.open_atomic(target) as out:
            out.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_links_folders_and_files_it_may_not_replace_are_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("outside")
    (tmp_path / "link.png").symlink_to(victim)
    with pytest.raises(FileWriteError, match=r"link.png is a symbolic link"):
        files.write_bytes(tmp_path / "link.png", b"x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileWriteError, match=r"folder is a folder"):
        files.write_bytes(tmp_path / "folder", b"x")
    with pytest.raises(FileWriteError, match="victim exists and is not a file fsr_jax wrote"):
        files.write_bytes(victim, b"x", replaces=lambda p: False)
    assert victim.read_text() == "outside"


def test_a_planted_temporary_name_is_not_followed(tmp_path):
    """The temporary file's name is random and created exclusively: a link planted under the
    old fixed name (`<name>.partial`) is neither followed nor replaced."""
    victim = tmp_path / "victim"
    victim.write_text("outside")
    for planted in ("out.bin.partial", ".out.bin.partial", ".out.bin.tmp"):
        (tmp_path / planted).symlink_to(victim)
    files.write_bytes(tmp_path / "out.bin", b"payload")
    assert victim.read_text() == "outside" and (tmp_path / "out.bin").read_bytes() == b"payload"


def test_a_write_error_is_one_line_naming_the_path(tmp_path):
    parent_is_a_file = tmp_path / "file"
    parent_is_a_file.write_text("x")
    with pytest.raises(FileWriteError, match=f"cannot write {parent_is_a_file / 'a.txt'}: ") as err:
        files.write_text(parent_is_a_file / "a.txt", "x")
    assert "\n" not in str(err.value)


def test_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    files.write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)


def test_output_names_are_unique_per_input_file():
    paths = [pathlib.Path(p) for p in ("x/a.png", "y/A.jpg", "b.png")]
    assert files.output_names(paths) == ["a.png", "A.jpg", "b"]


def test_reads_check_the_kind_and_size_of_a_file_before_reading(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    assert files.read_bytes(tmp_path / "a", 5) == b"12345"
    with pytest.raises(FileReadError, match=r"5 bytes, more than 4 for a thing; not read"):
        files.read_bytes(tmp_path / "a", 4, "a thing")
    os.mkfifo(tmp_path / "fifo")
    for special in (tmp_path / "fifo", pathlib.Path("/dev/zero"), tmp_path):
        with pytest.raises(FileReadError, match="not a regular file"):
            files.read_bytes(special, 10)
    with pytest.raises(FileReadError, match="cannot read"):
        files.read_bytes(tmp_path / "missing", 10)
