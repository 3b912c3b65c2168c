"""What ``--user-dir`` / ``common.user_dir=`` points at: importing it registers sf_fairseq's
tasks, models and criteria in fairseq (``fairseq-hydra-train ... common.user_dir=<dir>``, where
``sf-paths --user-dir`` prints ``<dir>``)."""

from sf_fairseq import plugin

plugin.register()
