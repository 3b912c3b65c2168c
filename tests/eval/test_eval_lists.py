from __future__ import annotations

from pathlib import Path

import pytest

from sf_fairseq.data.manifest import ManifestItem, write_manifest
from sf_fairseq.eval import lists


def test_speechforensics_list_splits_on_last_space(tmp_path: Path) -> None:
    text = (
        "RealVideo-RealAudio/African/men/id00076/00109.mp4 1\n"
        "FakeVideo-FakeAudio/Asian (East)/women/id00010/00032_id01_wavtolip.mp4 0\n"
        "\n"
        "# comment\n"
        "fake/NeuralTextures/videos/000_003.mp4 0\n"
        "original_videos/2020 01 01/a b.mp4 1\r\n"
    )
    path = tmp_path / "test_list.txt"
    path.write_text(text, encoding="utf-8")
    items = lists.read_speechforensics_list(path, data_root="/data/mouths")
    assert [i.label for i in items] == [1, 0, 0, 1]
    second = items[1]
    assert second.id == "FakeVideo-FakeAudio/Asian (East)/women/id00010/00032_id01_wavtolip.mp4"
    assert second.video == "/data/mouths/" + second.id
    assert second.audio == "/data/mouths/FakeVideo-FakeAudio/Asian (East)/women/id00010/00032_id01_wavtolip.wav"
    assert [i.category for i in items] == [
        "RealVideo-RealAudio",
        "FakeVideo-FakeAudio",
        "NeuralTextures",
        "original_videos",
    ]


@pytest.mark.parametrize("line", ["no_label_here\n", "a.mp4 2\n", " 1\n"])
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "list.txt"
    path.write_text("ok.mp4 1\n" + line, encoding="utf-8")
    with pytest.raises(lists.ListFormatError, match=r"list.txt:2"):
        lists.read_speechforensics_list(path)


def test_csv_with_category_and_audio_columns(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(
        "path,label,category,audio\n"
        "x/a b.mp4,real,,\n"
        "fake/Deepfakes/videos/1.mp4,0,mine,sounds/1.wav\n"
        "u.mp4,,,\n",
        encoding="utf-8",
    )
    items = lists.read_list(path, data_root="/r")
    assert [(i.label, i.category) for i in items] == [(1, None), (0, "mine"), (None, None)]
    assert items[0].audio == "/r/x/a b.wav" and items[1].audio == "/r/sounds/1.wav"
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\n", encoding="utf-8")
    with pytest.raises(lists.ListFormatError, match="path"):
        lists.read_list(bad)


def test_category_rules() -> None:
    assert lists.ffpp_category("FaceForensics/c23/fake/Face2Face/videos/001_870.mp4") == "Face2Face"
    assert lists.ffpp_category("FaceForensics/c23/real/videos/001.mp4") == "real"
    assert lists.fakeavceleb_category("FakeVideo-RealAudio/African/men/id1/x.mp4") == "FakeVideo-RealAudio"
    assert lists.kodf_category("dffs/123/x.mp4") == "dffs"
    assert lists.kodf_category("other/dffs/x.mp4") == "dffs"
    assert lists.auto_category("something/else.mp4") is None
    assert lists.CATEGORY_RULES["none"]("fake/Deepfakes/a.mp4") is None


def test_manifest_split_with_labels(tmp_path: Path) -> None:
    write_manifest(
        tmp_path / "test.tsv",
        "/root",
        [ManifestItem("a", "v/a.mp4", "w/a.wav", 10, 6400), ManifestItem("b", "/abs/b.mp4", "w/b.wav", 5, 3200)],
    )
    items = lists.read_manifest_split(tmp_path, "test")
    assert [(i.id, i.video, i.audio, i.label) for i in items] == [
        ("a", "/root/v/a.mp4", "/root/w/a.wav", None),
        ("b", "/abs/b.mp4", "/root/w/b.wav", None),
    ]
    (tmp_path / "test.forgery").write_text("1\n0 Deepfakes\n", encoding="utf-8")
    items = lists.read_manifest_split(tmp_path, "test")
    assert [(i.label, i.category) for i in items] == [(1, None), (0, "Deepfakes")]
    (tmp_path / "test.forgery").write_text("1\n", encoding="utf-8")
    with pytest.raises(lists.ListFormatError, match="1 lines for 2"):
        lists.read_manifest_split(tmp_path, "test")


def test_trailing_whitespace_after_the_label_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("real/a b.mp4 1 \nfake/c.mp4 0\t \r\n", encoding="utf-8")
    items = lists.read_speechforensics_list(path, data_root="/r")
    assert [(i.id, i.label) for i in items] == [("real/a b.mp4", 1), ("fake/c.mp4", 0)]
    assert items[0].audio == "/r/real/a b.wav"


@pytest.mark.parametrize("line", ["missing.mp4 \n", "my clip.mp4\n", "a.mp4 x \n"])
def test_a_line_without_a_label_is_an_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "list.txt"
    path.write_text("ok.mp4 1\n" + line, encoding="utf-8")
    with pytest.raises(lists.ListFormatError, match=r"list.txt:2"):
        lists.read_speechforensics_list(path)
