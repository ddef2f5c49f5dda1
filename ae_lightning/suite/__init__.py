"""Suites: many runs of many variants, compared — ``ae-lightning compare`` and ``ae-lightning tune``.

Read in this order: ``config.py`` (a suite file, loaded and validated once; the one suite → variant merge; a run's
settings), ``launch.py`` (slots on GPUs/CPUs, one process per run, streaming), ``run.py`` (one run's process:
train, then the battery), ``compare.py`` (plan the runs, run the suite, write the report), ``search.py`` and
``tune.py`` (the tuning section and the Optuna studies). Imports point down: nothing below ``suite/`` imports it.
"""
