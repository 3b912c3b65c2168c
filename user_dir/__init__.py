"""What ``--user-dir`` / ``common.user_dir=`` points at: importing it registers sf_fairseq's
tasks, models and criteria in fairseq (``fairseq-hydra-train ... common.user_dir=<repo>/user_dir``)."""

import sf_fairseq  # noqa: F401  (registration happens on import)
