"""Readers on small stand-in datasets in each dataset's exact on-disk format (placeholder
videos): labels, categories, segments, and a clear error or a problem record for every bad entry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sf_fairseq.eval.benchmarks import FAKE, REAL, MetadataError, readers


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---- FakeAVCeleb ------------------------------------------------------------------------------

# The v1.2 header names nine columns and ends with a comma; rows hold ten values.
FAVC_HEADER = "source,target1,target2,method,category,type,race,gender,path,\n"
FAVC_ROWS = [
    "id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076\n",
    "id00076,-,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_fake.mp4,FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076\n",
    ("id00166,id00173,-,faceswap,C,FakeVideo-RealAudio,Asian (East),men,00010_id00173.mp4,"
     "FakeAVCeleb/FakeVideo-RealAudio/Asian (East)/men/id00166\n"),
    ("id00076,id00476,10,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_10_id00476_wavtolip.mp4,"
     "FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076\n"),
]


def favc_root(tmp_path: Path, rows=FAVC_ROWS, header=FAVC_HEADER, missing: int | None = None) -> Path:
    root = tmp_path / "FakeAVCeleb_v1.2"
    root.mkdir()
    (root / "meta_data.csv").write_text(header + "".join(rows), encoding="utf-8")
    for k, row in enumerate(rows):
        values = row.rstrip("\n").split(",")
        if k != missing and len(values) == 10:
            touch(root / values[9].split("/", 1)[1] / values[8])
    return root


def test_fakeavceleb_reads_the_v12_file(tmp_path):
    found = readers.read_fakeavceleb(favc_root(tmp_path))
    assert [it.id for it in found.items] == [
        "RealVideo-RealAudio/African/men/id00076/00109.mp4",
        "RealVideo-FakeAudio/African/men/id00076/00109_fake.mp4",
        "FakeVideo-RealAudio/Asian (East)/men/id00166/00010_id00173.mp4",
        "FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip.mp4",
    ]
    assert [it.label for it in found.items] == [REAL, FAKE, FAKE, FAKE]
    assert [it.category for it in found.items] == ["RealVideo-RealAudio", "RealVideo-FakeAudio",
                                                    "FakeVideo-RealAudio", "FakeVideo-FakeAudio"]
    assert [it.method for it in found.items] == ["real", "rtvc", "faceswap", "wav2lip"]
    assert all(Path(it.video).is_file() and it.fake_segments is None for it in found.items)
    assert found.problems == []


def test_fakeavceleb_header_with_filename_column(tmp_path):
    header = "source,target1,target2,method,category,type,race,gender,filename,path\n"
    root = favc_root(tmp_path, header=header)
    assert len(readers.read_fakeavceleb(root).items) == 4


def test_fakeavceleb_missing_video_is_a_problem_not_a_drop(tmp_path):
    found = readers.read_fakeavceleb(favc_root(tmp_path, missing=2))
    assert len(found.items) == 3
    (problem,) = found.problems
    assert problem.reason == "missing_video" and problem.id.startswith("FakeVideo-RealAudio/Asian (East)")
    assert problem.where.endswith("meta_data.csv:4") and problem.label == FAKE


@pytest.mark.parametrize("bad, message", [
    (FAVC_ROWS[0].replace(",A,", ",E,"), "unknown category 'E'"),
    (FAVC_ROWS[0].replace(",A,", ",B,"), "category 'B' is RealVideo-FakeAudio"),
    ("id00076,-,-,real,A,RealVideo-RealAudio,African,men\n", "expected 10 values"),
])
def test_fakeavceleb_malformed_rows_name_file_and_line(tmp_path, bad, message):
    root = favc_root(tmp_path, rows=[FAVC_ROWS[1], bad])
    with pytest.raises(MetadataError, match=rf"meta_data.csv:3: .*{message}"):
        readers.read_fakeavceleb(root)


# ---- FaceForensics++ --------------------------------------------------------------------------


def ffpp_root(tmp_path: Path, skip: str | None = None) -> Path:
    root = tmp_path / "ffpp"
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "test.json").write_text(json.dumps([["953", "974"], ["012", "026"]]))
    for name in ("953", "974", "012", "026"):
        touch(root / "original_sequences/youtube/c23/videos" / f"{name}.mp4")
        touch(root / "audio" / f"{name}.wav")
    for method in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
        for name in ("953_974", "974_953", "012_026", "026_012"):
            if f"{method}/{name}" != skip:
                touch(root / "manipulated_sequences" / method / "c23/videos" / f"{name}.mp4")
    return root


def test_ffpp_official_test_split(tmp_path):
    root = ffpp_root(tmp_path, skip="FaceSwap/026_012")
    found = readers.read_ffpp(root, audio_dir=root / "audio")
    reals = [it for it in found.items if it.label == REAL]
    assert [it.id for it in reals] == [
        f"original_sequences/youtube/c23/videos/{n}.mp4" for n in ("953", "974", "012", "026")]
    fakes = [it for it in found.items if it.label == FAKE]
    assert len(fakes) == 4 * 4 - 1 and {it.category for it in fakes} == set(readers.FFPP_DEFAULT_METHODS)
    first = next(it for it in fakes if it.id.endswith("Deepfakes/c23/videos/974_953.mp4"))
    assert first.audio == str(root / "audio" / "974.wav")  # the target's audio
    (problem,) = found.problems
    assert problem.reason == "missing_video" and problem.id.endswith("FaceSwap/c23/videos/026_012.mp4")


def test_ffpp_missing_audio_and_bad_split(tmp_path):
    root = ffpp_root(tmp_path)
    (root / "audio" / "953.wav").unlink()
    found = readers.read_ffpp(root, methods=["Deepfakes"], audio_dir=root / "audio")
    assert sorted(p.id.rsplit("/", 1)[1] for p in found.problems) == ["953.mp4", "953_974.mp4"]
    assert {p.reason for p in found.problems} == {"missing_audio"}
    (root / "splits" / "test.json").write_text(json.dumps([["953"]]))
    with pytest.raises(MetadataError, match=r"test.json\[0\]: expected a pair"):
        readers.read_ffpp(root)
    with pytest.raises(MetadataError, match="val.json: no split file"):
        readers.read_ffpp(root, split="val")


# ---- KoDF -------------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8-sig") -> None:
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def kodf_root(tmp_path: Path, encoding: str = "utf-8-sig", model: str = "dfl") -> Path:
    root = tmp_path / "kodf"
    root.mkdir()
    write_csv(root / "원본영상_validation_메타데이터.csv", ["영상ID", "성별"],
              [["0e105f8ec5146f9737d0_022.mp4", "남"], ["0e105f8ec5146f9737d0_023.mp4", "남"]], encoding)
    write_csv(root / "변조영상_validation_메타데이터.csv", ["영상ID", "타겟영상", "변조모델"], [
        ["169273_103564_5_0680.mp4", "169273_001.mp4", "audio-driven"],
        ["c9f5_a3a0_1_0064.mp4", "c9f5_001.mp4", model],
        ["c9f5_a3a0_3_0001.mp4", "c9f5_001.mp4", "fsgan"],
    ], encoding)
    touch(root / "original_videos/0e105f8ec5146f9737d0/0e105f8ec5146f9737d0_022.mp4")
    touch(root / "audio-driven/20200820/169273/169273_103564_5_0680.mp4")
    touch(root / "dfl/20200803/c9f5/c9f5_a3a0_1_0064.mp4")
    touch(root / "fsgan/20200803/c9f5/c9f5_a3a0_3_0001.mp4")
    return root


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp949"])
def test_kodf_reads_the_ai_hub_csvs_without_fsgan(tmp_path, encoding):
    found = readers.read_kodf(kodf_root(tmp_path, encoding))
    assert [(it.id, it.label, it.category) for it in found.items] == [
        ("original_videos/0e105f8ec5146f9737d0/0e105f8ec5146f9737d0_022.mp4", REAL, "original_videos"),
        ("audio-driven/20200820/169273/169273_103564_5_0680.mp4", FAKE, "audio-driven"),
        ("dfl/20200803/c9f5/c9f5_a3a0_1_0064.mp4", FAKE, "dfl"),
    ]
    assert [(p.reason, p.id) for p in found.problems] == [
        ("missing_video", "original_videos/0e105f8ec5146f9737d0_023.mp4"),
        ("excluded", "fsgan/c9f5_a3a0_3_0001.mp4"),
    ]
    with_fsgan = readers.read_kodf(tmp_path / "kodf", methods=readers.KODF_METHODS)
    assert "fsgan" in {it.category for it in with_fsgan.items}


def test_kodf_unknown_model_and_missing_files(tmp_path):
    root = kodf_root(tmp_path, model="stylegan")
    with pytest.raises(MetadataError, match=r"변조영상_validation_메타데이터.csv:3: unknown 변조모델 'stylegan'"):
        readers.read_kodf(root)
    with pytest.raises(MetadataError, match="training_메타데이터.csv: KoDF metadata file not found"):
        readers.read_kodf(root, split="training")


# ---- AV-Deepfake1M ----------------------------------------------------------------------------

AV1M_ENTRIES = [
    {"file": "id00012/21Uxsk56VDQ/00001/real.mp4", "original": None, "split": "val", "modify_type": "real",
     "audio_model": "", "fake_segments": [], "audio_fake_segments": [], "visual_fake_segments": [],
     "video_frames": 100, "audio_frames": 64000},
    {"file": "id00012/21Uxsk56VDQ/00001/fake_video_fake_audio.mp4", "original": "id00012/21Uxsk56VDQ/00001/real.mp4",
     "split": "val", "modify_type": "both-modified", "audio_model": "your_tts", "fake_segments": [[1.2, 1.8]],
     "audio_fake_segments": [[1.2, 1.8]], "visual_fake_segments": [[1.2, 1.8]], "video_frames": 100,
     "audio_frames": 64000},
    {"file": "id00012/21Uxsk56VDQ/00001/real_video_fake_audio.mp4", "original": "id00012/21Uxsk56VDQ/00001/real.mp4",
     "split": "val", "modify_type": "audio_modified", "audio_model": "vits", "fake_segments": [[0.5, 1.0], [2, 2.5]],
     "audio_fake_segments": [[0.5, 1.0], [2, 2.5]], "visual_fake_segments": [], "video_frames": 100,
     "audio_frames": 64000},
]


def av1m_root(tmp_path: Path, entries=AV1M_ENTRIES) -> Path:
    root = tmp_path / "av1m"
    root.mkdir()
    (root / "val_metadata.json").write_text(json.dumps(entries))
    for entry in entries:
        touch(root / "val" / entry["file"])
    return root


def test_avdeepfake1m_metadata(tmp_path):
    found = readers.read_avdeepfake1m(av1m_root(tmp_path))
    assert [(it.label, it.category, it.method, it.fake_segments) for it in found.items] == [
        (REAL, "real", None, ()),
        (FAKE, "both_modified", "your_tts", ((1.2, 1.8),)),
        (FAKE, "audio_modified", "vits", ((0.5, 1.0), (2.0, 2.5))),
    ]
    assert found.items[1].video == str(tmp_path / "av1m" / "val" / AV1M_ENTRIES[1]["file"])


@pytest.mark.parametrize("change, message", [
    ({"fake_segments": [[1.8, 1.2]]}, r"segment 0 must be \[start, end\]"),
    ({"fake_segments": [[1.2]]}, "segment 0 must be"),
    ({"modify_type": "lip_modified"}, "unknown modify_type 'lip_modified'"),
    ({"modify_type": "real"}, "modify_type .real. disagrees with fake_segments"),
    ({"fake_segments": None}, "field 'fake_segments' must be list"),
])
def test_avdeepfake1m_malformed_entries_name_file_and_entry(tmp_path, change, message):
    entries = [AV1M_ENTRIES[0], {**AV1M_ENTRIES[1], **change}]
    with pytest.raises(MetadataError, match=rf"val_metadata.json\[1\] \(id00012.*\): {message}"):
        readers.read_avdeepfake1m(av1m_root(tmp_path, entries))


def test_avdeepfake1m_modify_flags_instead_of_modify_type(tmp_path):
    entries = [{k: v for k, v in e.items() if k != "modify_type"} for e in AV1M_ENTRIES]
    entries[1].update(modify_video=True, modify_audio=False)
    entries[2].update(modify_video=False, modify_audio=True)
    entries[0].update(modify_video=False, modify_audio=True)
    with pytest.raises(MetadataError, match=r"\[0\] .*'audio_modified' disagrees with fake_segments \[\]"):
        readers.read_avdeepfake1m(av1m_root(tmp_path, entries))
    entries[0].update(modify_audio=False)
    (tmp_path / "av1m" / "val_metadata.json").write_text(json.dumps(entries))
    found = readers.read_avdeepfake1m(tmp_path / "av1m")
    assert [it.category for it in found.items] == ["real", "visual_modified", "audio_modified"]


def test_avdeepfake1m_unlabelled_test_split(tmp_path):
    root = tmp_path / "av1m"
    touch(root / "test" / "a/b/0.mp4")
    (root / "test_files.txt").write_text("a/b/0.mp4\na/b/1.mp4\n")
    found = readers.read_avdeepfake1m(root, split="test")
    assert [(it.id, it.label) for it in found.items] == [("a/b/0.mp4", None)]
    assert [p.id for p in found.problems] == ["a/b/1.mp4"]
    with pytest.raises(MetadataError, match="neither val_metadata.json nor val_files.txt"):
        readers.read_avdeepfake1m(root, split="val")


# ---- LAV-DF -----------------------------------------------------------------------------------


def lavdf_entry(name: str, split: str, periods: list, video: bool, audio: bool) -> dict:
    return {"file": f"{split}/{name}.mp4", "n_fakes": len(periods), "fake_periods": periods, "duration": 4.0,
            "original": None, "modify_video": video, "modify_audio": audio, "split": split,
            "video_frames": 100, "audio_channels": 1, "audio_frames": 64000, "timestamps": [], "transcript": ""}


def test_lavdf_metadata_selects_the_split(tmp_path):
    root = tmp_path / "lavdf"
    entries = [lavdf_entry("000001", "test", [], False, False),
               lavdf_entry("000002", "test", [[1.0, 1.4]], True, True),
               lavdf_entry("000003", "test", [[2.0, 2.2]], False, True),
               lavdf_entry("000004", "train", [[2.0, 2.2]], True, False)]
    root.mkdir()
    (root / "metadata.json").write_text(json.dumps(entries))
    for entry in entries[:3]:
        touch(root / entry["file"])
    found = readers.read_lavdf(root)
    assert [(it.id, it.label, it.category, it.fake_segments) for it in found.items] == [
        ("test/000001.mp4", REAL, "real", ()),
        ("test/000002.mp4", FAKE, "both_modified", ((1.0, 1.4),)),
        ("test/000003.mp4", FAKE, "audio_modified", ((2.0, 2.2),)),
    ]
    entries[1]["n_fakes"] = 2
    (root / "metadata.json").write_text(json.dumps(entries))
    with pytest.raises(MetadataError, match=r"metadata.json\[1\] \(test/000002.mp4\): n_fakes is 2"):
        readers.read_lavdf(root)


# ---- SpeechForensics lists --------------------------------------------------------------------


def test_speechforensics_list_items_are_prepared(tmp_path):
    mouths = tmp_path / "mouths"
    for rel in ("original_videos/s/s_022.mp4", "dfl/20200803/c/c_1_0064.mp4"):
        touch(mouths / rel)
        touch((mouths / rel).with_suffix(".wav"))
    listing = tmp_path / "test_list.txt"
    listing.write_text("original_videos/s/s_022.mp4 1\ndfl/20200803/c/c_1_0064.mp4 0\nfo/1/x/x_1.mp4 0\n")
    found = readers.read_speechforensics(listing, mouths)
    assert [(it.id, it.label, it.category, it.prepared) for it in found.items] == [
        ("original_videos/s/s_022.mp4", REAL, "original_videos", True),
        ("dfl/20200803/c/c_1_0064.mp4", FAKE, "dfl", True),
    ]
    assert found.items[0].audio == str(mouths / "original_videos/s/s_022.wav")
    assert [(p.id, p.reason) for p in found.problems] == [("fo/1/x/x_1.mp4", "missing_video")]
