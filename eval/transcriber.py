"""Transcripts from a fine-tuned AV-HuBERT (``av_hubert_seq2seq``) checkpoint: what the lips say
and what the audio says.

For a clip (mouth-ROI video + 16 kHz wav), one model decodes the video stream alone (the audio is
zeros after its front end) and the audio stream alone, with fairseq's beam search
(``SequenceGenerator``); pieces become text through the SentencePiece model saved inside the
checkpoint. Their disagreement is a second, interpretable inconsistency signal next to the
SpeechForensics similarity score: a dubbed or lip-synced clip reads one sentence on the lips and
another in the audio.

* ``word_disagreement`` / ``char_disagreement``: edit distance between the two transcripts (words,
  or characters without spaces) divided by the length of the longer one, in [0, 1]: symmetric,
  0 = identical, 1 = nothing in common.
* :func:`word_error_rate`: edit distance over reference words (the reference's WER, as a
  fraction), for decoding a manifest against ``{split}.wrd`` references.

Use an audio-visual (AVSR) model (``*_noise_pt_noise_ft_*``) for both transcripts; a lip-reading
(VSR) model was trained on video alone and its audio-only transcript is meaningless.

The ``sf-transcribe`` command is :mod:`.transcribe`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from sf_fairseq.checkpoint import load_checkpoint_to_cpu
from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.data.manifest import read_manifest
from sf_fairseq.records import Transcripts

from .encode import FPS, SAMPLE_RATE, ClipInputs, InputSettings, load_clip, pad_batch, padding_mask

logger = logging.getLogger(__name__)

STREAMS = ("video", "audio", "av")


# ---- edit distances ---------------------------------------------------------------------------


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (substitutions, insertions, deletions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def disagreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Edit distance / length of the longer sequence: 0 (identical) .. 1; 0 for two empty ones."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


def word_error_rate(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Word edits over reference words, summed over utterances (a fraction; x100 for percent).

    Raises:
        ValueError: different numbers of references and hypotheses, or no reference words.
    """
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses))
    words = sum(len(r.split()) for r in references)
    if words == 0:
        raise ValueError("the references have no words")
    return edits / words


@dataclass
class ClipTranscripts:
    """The two transcripts of a clip and how much they disagree (see the module docstring)."""

    lips: str
    audio: str
    word_disagreement: float
    char_disagreement: float

    @classmethod
    def compare(cls, lips: str, audio: str) -> "ClipTranscripts":
        return cls(
            lips=lips,
            audio=audio,
            word_disagreement=disagreement(lips.split(), audio.split()),
            char_disagreement=disagreement(lips.replace(" ", ""), audio.replace(" ", "")),
        )

    def to_record(self, model: str) -> Transcripts:
        """The ``transcripts`` field of a score record, transcribed by ``model``."""
        return Transcripts(lips=self.lips, audio=self.audio, word_disagreement=self.word_disagreement,
                           char_disagreement=self.char_disagreement, model=model)


# ---- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeSettings:
    """Beam search options (fairseq's ``generation`` names). The reference decodes with beam 50,
    lenpen 1, ``max_len = 1.0 * frames + 0``; a smaller beam is much faster on CPU."""

    beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = 1.0
    max_len_b: int = 0


class Transcriber:
    """A fine-tuned checkpoint ready to decode batches of clips, stream by stream.

    Args:
        model: an :class:`~sf_fairseq.models.av_hubert_seq2seq.AVHubertSeq2Seq`.
        task: its task (target dictionary, SentencePiece model, input settings).
        decode: beam search options.
        device: where to run.
    """

    def __init__(self, model: torch.nn.Module, task: Any, decode: DecodeSettings = DecodeSettings(),
                 device: str = "cpu") -> None:
        from fairseq.dataclass.configs import GenerationConfig

        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.task = task
        self.dictionary = task.target_dictionary
        self.tokenizer = task.s2s_tokenizer
        self.settings = InputSettings.from_task_config(dict(task.cfg))
        gen_cfg = GenerationConfig(beam=decode.beam, lenpen=decode.lenpen, max_len_a=decode.max_len_a,
                                   max_len_b=decode.max_len_b)
        self.generator = task.build_generator([self.model], gen_cfg)
        modalities = set(task.cfg.modalities)
        if modalities != {"audio", "video"}:
            logger.warning(
                "this model was fine-tuned on %s only: transcripts of other streams are not meaningful",
                sorted(modalities),
            )

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, decode: DecodeSettings = DecodeSettings(), device: str = "cpu",
        trust_checkpoint: bool = False,
    ) -> "Transcriber":
        """Load a fine-tuned checkpoint from the file alone (no pretraining, label or
        SentencePiece files needed)."""
        from fairseq import tasks

        state = load_checkpoint_to_cpu(os.fspath(path), trust_checkpoint=trust_checkpoint)
        cfg = state["cfg"]
        if cfg.model.get("_name") != "av_hubert_seq2seq":
            raise ValueError(f"{path}: not a fine-tuned seq2seq checkpoint (model {cfg.model.get('_name')!r})")
        task = tasks.setup_task(cfg.task)
        task.load_state_dict(state.get("task_state") or {})
        model = task.build_model(cfg.model, from_checkpoint=True)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        return cls(model, task, decode, device)

    def to_text(self, tokens: torch.Tensor) -> str:
        """Dictionary indices -> pieces -> text (SentencePiece)."""
        pieces = self.dictionary.string(
            tokens.cpu(), extra_symbols_to_ignore={self.dictionary.bos(), self.dictionary.pad()}
        )
        return self.tokenizer.decode(pieces)

    @torch.inference_mode()
    def decode(self, source: dict[str, torch.Tensor | None], mask: torch.Tensor | None) -> list[str]:
        """Best hypothesis of each clip of a prepared batch: source ``{"video": [B, 1, T, H, W] |
        None, "audio": [B, F, T] | None}``, mask [B, T] (True at padding)."""
        sample = {"net_input": {"source": source, "padding_mask": mask}}
        return [self.to_text(hypos[0]["tokens"]) for hypos in self.generator.generate([self.model], sample)]

    def transcribe(self, clips: Sequence[ClipInputs], stream: str) -> list[str]:
        """Transcripts of a batch of clips from one stream: ``video`` (lips alone), ``audio``
        (audio alone) or ``av`` (both, trimmed to the shorter stream)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        videos = [c.video for c in clips]
        audios = [c.audio for c in clips]
        if stream == "av":
            lengths = [min(v.shape[0], a.shape[0]) for v, a in zip(videos, audios)]
            videos = [v[:n] for v, n in zip(videos, lengths)]
            audios = [a[:n] for a, n in zip(audios, lengths)]
        source: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        lengths_t = None
        if stream in ("video", "av"):
            batch, lengths_t = pad_batch(videos)
            source["video"] = batch.unsqueeze(1).to(self.device)  # [B, 1, T, H, W]
        if stream in ("audio", "av"):
            batch, lengths_t = pad_batch(audios)
            source["audio"] = batch.transpose(1, 2).to(self.device)  # [B, F, T]
        mask = padding_mask(lengths_t.to(self.device), int(lengths_t.max()))
        return self.decode(source, mask)

    def transcribe_clips(self, clips: Sequence[ClipInputs]) -> list[ClipTranscripts]:
        """Lips-only and audio-only transcripts of a batch of loaded clips, and their disagreement."""
        return [ClipTranscripts.compare(lips, audio)
                for lips, audio in zip(self.transcribe(clips, "video"), self.transcribe(clips, "audio"))]

    def transcribe_clip(
        self, video_path: str | os.PathLike, audio_path: str | os.PathLike, max_seconds: float | None = 50.0
    ) -> ClipTranscripts:
        """Lips-only and audio-only transcripts of one clip, and their disagreement."""
        clip = load_clip(os.fspath(video_path), os.fspath(audio_path), self.settings, max_seconds)
        return self.transcribe_clips([clip])[0]


# ---- CLI ----------------------------------------------------------------------------------------


def transcribe_manifest(
    transcriber: Transcriber,
    manifest_path: str | os.PathLike,
    streams: Sequence[str],
    references: Sequence[str] | None = None,
    batch_size: int = 8,
    max_seconds: float | None = 50.0,
    max_padding: float | None = BatchLimits.max_padding,
) -> list[dict[str, Any]]:
    """One record per manifest item, in manifest order: ``{"id", "<stream>": transcript, ...,
    "ref"?}``. Items are decoded in batches of similar length (:func:`.pipeline.length_batches`
    on the manifest's frame counts), so a long clip does not pad a batch of short ones."""
    from tqdm import tqdm

    manifest = read_manifest(manifest_path)
    if references is not None and len(references) != len(manifest):
        raise ValueError(f"{manifest_path}: {len(manifest)} items but {len(references)} reference lines")
    cap = None if max_seconds is None else int(round(max_seconds * FPS))
    lengths = [max(it.n_video_frames, it.n_audio_samples * int(FPS) // SAMPLE_RATE) for it in manifest.items]
    lengths = [n if cap is None else min(n, cap) for n in lengths]
    records: list[dict[str, Any] | None] = [None] * len(manifest)
    with tqdm(total=len(manifest), unit="clip", desc="transcribing") as bar:
        for batch in length_batches(lengths, BatchLimits(batch_size, max_padding=max_padding)):
            items = [manifest.items[i] for i in batch]
            clips = [
                load_clip(manifest.resolve(it.video), manifest.resolve(it.audio), transcriber.settings, max_seconds)
                for it in items
            ]
            texts = {stream: transcriber.transcribe(clips, stream) for stream in streams}
            for row, (index, item) in enumerate(zip(batch, items)):
                record: dict[str, Any] = {"id": item.id, **{s: texts[s][row] for s in streams}}
                if references is not None:
                    record["ref"] = references[index]
                records[index] = record
            bar.update(len(items))
    return records


def transcribe_records(
    transcribe: Callable[[Sequence[Any]], list[ClipTranscripts]], clips: Sequence[Any], model: str
) -> list[Transcripts]:
    """``transcripts`` fields of a batch of clips: ``transcribe`` (e.g.
    :meth:`Transcriber.transcribe_clips`) on the whole batch, and clip by clip if the batch fails
    (e.g. out of memory), so that one bad clip only fails its own field. Never raises for a
    clip: a ``RuntimeError``/``ValueError``/``IndexError`` becomes that clip's failure."""
    errors = (RuntimeError, ValueError, IndexError)
    try:
        return [t.to_record(model) for t in transcribe(list(clips))]
    except errors as err:
        if len(clips) == 1:
            logger.warning("transcription failed: %s", err)
            return [Transcripts.failure(model, err)]
        logger.warning("transcribing a batch of %d failed (%s); transcribing its clips one at a time",
                       len(clips), err)
    out = []
    for clip in clips:
        try:
            out.append(transcribe([clip])[0].to_record(model))
        except errors as err:
            out.append(Transcripts.failure(model, err))
    return out
