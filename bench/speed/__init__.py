"""How fast is a training step, and how fast is the deployed student: ``python -m duda_engine bench``
(or ``python bench/run_bench.py``). Research tooling: the engine imports it only for that command.

Training mode times ``method.train_step`` for each *case* (a method with its networks) under each
*variant* (a set of speed switches: ``train.amp``, ``train.channels_last``, ``train.compile``, or a
bench-side change that is not a config switch yet), on synthetic tensors already on the device and
through the real data pipeline, where the time spent waiting for the next batch is measured on its
own. Warm-up iterations are excluded; on CUDA the device is synchronised around every timing. Every
speed-up is against ``fp32_eager`` measured in the same run, never against a stored number.

``check_parity(config_a, config_b, iterations, tolerance)`` runs two configs from the same seed on the
same batch and compares their per-iteration losses: a faster variant only becomes a default if it
trains the same network.

Inference mode (``--inference``) times the forward pass of the light presets (bf16 on CUDA, fp32 on
CPU) and reports images per second.

Results: a table on stdout and, with ``--json PATH``, the same as JSON with the device, the settings
and the exact command.
"""
