"""What users do to a run directory: evaluate, predict, export, explain and report.

These are library functions (the CLI is a thin layer over them). Each takes a run directory, loads it
with ``cnnlab.rundir.load_run`` and asks the run's task for whatever differs between tasks, so none
of them knows which task it serves.
"""
