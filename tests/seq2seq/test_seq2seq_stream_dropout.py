"""Fine-tuning stream dropout of av_hubert_seq2seq (``modality_dropout``, ``audio_dropout``): a
training batch sometimes keeps one stream only, so one model learns to read each stream alone."""

from __future__ import annotations

import torch

from test_seq2seq_variants import _batch, _model_cfg, _task, pretrained_path  # noqa: F401 (fixture)


def test_dropped_stream_is_missing_as_at_single_stream_inference(pretrained_path) -> None:  # noqa: F811
    source, padding_mask, prev, _ = _batch(with_audio=True)
    no_audio = {**source, "audio": None}
    drop_audio = _task().build_model(_model_cfg(pretrained_path, modality_dropout=1.0, audio_dropout=1.0))
    assert drop_audio.drop_stream(source) == no_audio
    drop_video = _task().build_model(_model_cfg(pretrained_path, modality_dropout=1.0, audio_dropout=0.0))
    assert drop_video.drop_stream(source)["video"] is None and drop_video.drop_stream(source)["audio"] is not None
    # off by default (the reference), and nothing to drop from a single stream
    plain = _task().build_model(_model_cfg(pretrained_path))
    assert plain.cfg.modality_dropout == 0.0 and plain.drop_stream(source) is source
    assert drop_audio.drop_stream(no_audio) is no_audio

    # in training the model sees the batch without the dropped stream; in evaluation it sees both
    drop_audio.load_state_dict(plain.state_dict())
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        # evaluation first: a training pass updates the lip ResNet's batch-norm statistics
        drop_audio.eval(), plain.eval()
        evaluated, _ = drop_audio(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
        plain_eval, _ = plain(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
        drop_audio.train(), plain.train()
        dropped, _ = drop_audio(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
        expected, _ = plain(source=no_audio, padding_mask=padding_mask, prev_output_tokens=prev)
        both, _ = plain(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
    torch.testing.assert_close(evaluated, plain_eval)
    torch.testing.assert_close(dropped, expected)
    assert not torch.allclose(dropped, both)
