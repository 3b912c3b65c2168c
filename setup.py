"""Installs sf_fairseq: the fairseq plugin (`sf_fairseq`), with the repository's
`preprocess/`, `eval/` and `user_dir/` folders installed under the same namespace as
`sf_fairseq.preprocess`, `sf_fairseq.eval` and `sf_fairseq.user_dir`, so that no generic
top-level name (`eval`, `preprocess`) lands in site-packages and an installed wheel carries the
fairseq user dir (`sf-paths --user-dir` prints where)."""

from setuptools import find_packages, setup

LIBRARY_PACKAGES = find_packages(include=["sf_fairseq", "sf_fairseq.*"])
NAMESPACED_FOLDERS = {
    "sf_fairseq.preprocess": "preprocess",
    "sf_fairseq.eval": "eval",
    "sf_fairseq.user_dir": "user_dir",
}


def _namespaced_packages() -> list[str]:
    packages = []
    for namespace, folder in NAMESPACED_FOLDERS.items():
        packages.append(namespace)
        packages += [f"{namespace}.{sub}" for sub in find_packages(where=folder)]
    return packages


setup(
    name="sf_fairseq",
    version="0.1.0",
    description=(
        "SpeechForensics on fairseq: audio-visual speech representations (AV-HuBERT) "
        "learned on real videos, and lip-speech agreement scores for forgery detection"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=LIBRARY_PACKAGES + _namespaced_packages(),
    package_dir={"": ".", **NAMESPACED_FOLDERS},
    package_data={
        "sf_fairseq": ["config/*/*.yaml", "schemas/*.json"],
        "sf_fairseq.eval": ["templates/*.html"],
        "sf_fairseq.preprocess": ["assets/*"],
        "sf_fairseq.preprocess.synthetic": [
            "faces/*.jpg", "faces/README.md", "speech/*.flac", "speech/*.json", "speech/README.md",
        ],
    },
    include_package_data=True,
    install_requires=[
        # torch and torchaudio must be built against each other.
        "torch==2.9.1",
        "torchaudio==2.9.1",
        # fairseq 0.12.3 with Python 3.11 fixes, prebuilt for cp311 (module `fairseq`).
        "ve-fairseq==0.12.3",
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        "numpy>=1.24",
        "scipy>=1.10",
        "sentencepiece>=0.1.99",
        "opencv-python-headless>=4.8",
        # dlib as a prebuilt wheel (the `dlib` distribution is source-only: ~10 min build).
        "dlib-bin>=19.24",
        # The 68-point landmark predictor and the CNN face detector weights (CC0).
        "face_recognition_models==0.3.0",
        "scikit-learn>=1.3",
        # Ships the astronaut photo of the synthetic corpus (and a similarity-transform reference).
        "scikit-image>=0.21",
        "joblib>=1.3",
        "soundfile>=0.12",
        # FFmpeg bindings with FFmpeg inside the wheel: timestamp-correct decoding of any input
        # and H.264 encoding of mouth ROIs, without a system FFmpeg. 18: frame.rotation (display
        # matrices of phone videos) and the tests' rotated clips (set_display_rotation).
        "av>=18",
        # espeak-ng's C library and voices in a wheel: the speech of the synthetic demo corpus.
        "espeakng-loader>=0.2",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # Silero's voice-activity model, shipped inside the wheel: speech gating of scores.
        "silero-vad>=6.2,<7",
        # Templates of the HTML evidence packs and the batch index (torch already needs it).
        "jinja2>=3.1",
    ],
    extras_require={
        # sf-serve, the local web page.
        "serve": ["flask>=3.0"],
        # sf-score-ray (raw video to score on Ray Data). <2.64: the actor restart/retry options
        # are passed through ray_remote_args, which Ray 2.64 removes.
        "ray": ["ray[data]>=2.60,<2.64"],
        "test": [
            "pytest>=7.4", "python_speech_features==0.6", "setuptools>=64", "wheel", "ruff>=0.6",
            # validates written records against sf_fairseq/schemas (tests/test_records.py)
            "jsonschema>=4.18",
            # the web page and its browser tests (Debian's chromium: scripts/install_browser.sh)
            "flask>=3.0", "selenium>=4.20",
            "ray[data]>=2.60,<2.64",
        ],
    },
    entry_points={
        "console_scripts": [
            "sf-prepare=sf_fairseq.preprocess.prepare:main",
            "sf-cluster-iteration=sf_fairseq.preprocess.iteration:main",
            "sf-score-video=sf_fairseq.eval.score_video:main",
            "sf-score-batch=sf_fairseq.eval.score_batch:main",
            "sf-report=sf_fairseq.eval.metrics_cli:main",
            "sf-transcribe=sf_fairseq.eval.transcribe:main",
            "sf-build-transcript-targets=sf_fairseq.preprocess.transcripts:main",
            "sf-synthetic-corpus=sf_fairseq.preprocess.synthetic.corpus:main",
            "sf-demo=sf_fairseq.eval.demo:main",
            "sf-perturb=sf_fairseq.eval.perturb:main",
            "sf-robustness=sf_fairseq.eval.robustness:main",
            "sf-paths=sf_fairseq.paths_cli:main",
            "sf-pack-roi=sf_fairseq.preprocess.pack:main",
            "sf-serve=sf_fairseq.eval.serve:main",
            "sf-score-ray=sf_fairseq.eval.score_ray:main",
            "sf-benchmark=sf_fairseq.eval.benchmark:main",
            "sf-reference-set=sf_fairseq.eval.reference_set:main",
            "sf-verify=sf_fairseq.eval.verify:main",
            "sf-evidence-index=sf_fairseq.eval.evidence_index_cli:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
