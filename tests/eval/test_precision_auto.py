"""Precision ``auto``: bf16 only where the device runs it natively, the resolved precision in the
scorer (hence in records and fingerprints), and a warning when bf16 is forced on a CPU that
emulates it."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pytest
import torch

from sf_fairseq.eval import encode, pipeline


@pytest.fixture(autouse=True)
def warn_again():
    encode._warn_emulated_bf16.cache_clear()
    yield
    encode._warn_emulated_bf16.cache_clear()


def fake_cpu(monkeypatch, capability: str, avx512_bf16: bool = False, amx: bool = False) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def fake_cuda(monkeypatch, bf16: bool) -> None:
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        assert not including_emulation, "emulated bf16 must not count as native"
        return bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)


@pytest.mark.parametrize("capability,avx512_bf16,amx,expected", [
    ("AVX2", False, False, "fp32"),
    ("AVX512", False, False, "fp32"),  # AVX-512 without the BF16 extension emulates it
    ("AVX512", True, False, "bf16"),
    ("AVX512", True, True, "bf16"),
    ("AVX512", False, True, "bf16"),
    ("DEFAULT", False, False, "fp32"),
])
def test_auto_on_cpu_follows_the_capability(monkeypatch, capability, avx512_bf16, amx, expected) -> None:
    fake_cpu(monkeypatch, capability, avx512_bf16, amx)
    assert encode.resolve_precision("auto", "cpu") == expected
    assert pipeline.resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize("bf16,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_native_bf16(monkeypatch, bf16, expected) -> None:
    fake_cpu(monkeypatch, "AVX2")
    fake_cuda(monkeypatch, bf16)
    assert encode.resolve_precision("auto", "cuda") == expected
    assert encode.resolve_precision("auto", "cuda:0") == expected


def test_explicit_precisions_are_kept_and_others_refused(monkeypatch) -> None:
    fake_cpu(monkeypatch, "AVX512", avx512_bf16=True)
    for precision in ("fp32", "bf16", "fp16"):
        assert encode.resolve_precision(precision, "cpu") == precision
    with pytest.raises(ValueError, match="precision must be one of"):
        encode.resolve_precision("int8", "cpu")


def test_forced_bf16_on_an_emulating_cpu_warns_once(monkeypatch, caplog) -> None:
    fake_cpu(monkeypatch, "AVX2")
    with caplog.at_level(logging.WARNING, logger="sf_fairseq.eval.encode"):
        assert encode.resolve_precision("bf16", "cpu") == "bf16"
        encode.resolve_precision("bf16", "cpu")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "emulated bf16 is ~7x slower here" in message and "--precision fp32 or auto" in message
    assert "AVX2" in message


def test_no_warning_where_bf16_is_native_or_not_forced(monkeypatch, caplog) -> None:
    fake_cuda(monkeypatch, True)
    with caplog.at_level(logging.WARNING, logger="sf_fairseq.eval.encode"):
        fake_cpu(monkeypatch, "AVX2")
        encode.resolve_precision("auto", "cpu")
        encode.resolve_precision("fp32", "cpu")
        encode.resolve_precision("bf16", "cuda")
        fake_cpu(monkeypatch, "AVX512", amx=True)
        encode.resolve_precision("bf16", "cpu")
    assert not caplog.records


def test_cpu_capability_names_the_bf16_extensions(monkeypatch) -> None:
    fake_cpu(monkeypatch, "AVX2")
    assert encode.cpu_capability() == "AVX2"
    fake_cpu(monkeypatch, "AVX512", avx512_bf16=True, amx=True)
    assert encode.cpu_capability() == "AVX512 + AVX512_BF16 + AMX"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pipeline.add_scorer_arguments(parser)
    return parser.parse_args(["--path", "model.pt", *argv])


def test_command_line_default_is_auto_and_old_flags_are_aliases(monkeypatch) -> None:
    assert parse().precision == "auto"
    assert parse("--bf16").precision == "bf16"
    assert parse("--fp16").precision == "fp16"
    assert parse("--precision", "fp32").precision == "fp32"
    with pytest.raises(SystemExit):
        parse("--bf16", "--precision", "fp32")


def test_precision_from_arguments_is_resolved_for_the_device(monkeypatch) -> None:
    fake_cpu(monkeypatch, "AVX2")
    fake_cuda(monkeypatch, True)
    assert pipeline.precision_from_arguments(parse("--cpu")) == "fp32"
    assert pipeline.precision_from_arguments(parse(), torch.device("cuda")) == "bf16"
    assert pipeline.precision_from_arguments(parse("--bf16", "--cpu")) == "bf16"
    fake_cpu(monkeypatch, "AVX512", avx512_bf16=True)
    assert pipeline.precision_from_arguments(parse("--cpu")) == "bf16"
    assert pipeline.precision_from_arguments(parse("--precision", "fp32", "--cpu")) == "fp32"


def test_stream_encoder_holds_the_resolved_precision(monkeypatch, stand_in) -> None:
    fake_cpu(monkeypatch, "AVX512", avx512_bf16=True)
    clip = encode.ClipInputs(np.zeros((4, 88, 88), np.float32), np.zeros((4, 104), np.float32))
    encoder = encode.StreamEncoder(stand_in, precision="auto")
    assert encoder.precision == "bf16"
    encoder.encode([clip])
    assert stand_in.calls[0]["dtype"] == torch.bfloat16


@pytest.mark.skipif(encode.cpu_native_bf16(), reason="this CPU runs bf16 natively")
def test_scorer_built_with_auto_on_this_cpu_uses_fp32(shared_dir) -> None:
    checkpoint = shared_dir / "fixtures/avhubert_tiny/checkpoint.pt"
    scorer = pipeline.load_scorer(checkpoint, "cpu", precision="auto")
    assert scorer.encoder.precision == "fp32"  # what records and fingerprints carry
    linear = next(m for m in scorer.encoder.model.modules() if isinstance(m, torch.nn.Linear))
    assert linear.weight.dtype == torch.float32
    args = parse("--cpu")
    from_arguments = pipeline.load_scorer_from_arguments(args, str(checkpoint), torch.device("cpu"))
    assert from_arguments.encoder.precision == "fp32"
    forced = pipeline.load_scorer_from_arguments(args, str(checkpoint), torch.device("cpu"), precision="bf16")
    assert forced.encoder.precision == "bf16"


def test_cpu_model_name_reads_cpuinfo_and_falls_back(monkeypatch, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t: avx2\n")
    real_open = open
    monkeypatch.setattr(encode, "open", lambda path, *a, **k: real_open(cpuinfo, *a, **k), raising=False)
    assert encode.cpu_model_name() == "Example CPU 9000"

    def missing(path, *a, **k):
        raise FileNotFoundError(path)

    monkeypatch.setattr(encode, "open", missing, raising=False)
    monkeypatch.setattr(encode.platform, "processor", lambda: "x86_64-fallback")
    assert encode.cpu_model_name() == "x86_64-fallback"
