"""Writes: every change to runs and their results goes through a function in this package, by job.

- ``launch``: a launch's input -> the engine config, validated by the engine -> a queued run
- ``lifecycle``: ``run_transition`` (the only function that changes a run's status), cancel, resume,
  delete, log lines, sending a run to the queue
- ``worker``: a worker's claim (a fencing token), heartbeat, progress, finish and failure
- ``records``: metrics, evaluations, samples and checkpoints a worker reports
- ``claims``: the check every worker write goes through (``ClaimLost`` once another claim holds the run)
- ``reaper``: runs whose worker died, runs whose message never reached a worker
- ``limits``: the time limits and claim count the worker protocol and the reaper use
"""
