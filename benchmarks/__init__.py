"""The benchmarks of fastsam-onnx: every measurement of the runtime and of the PyTorch reference.

Mapped as ``fastsam_onnx.benchmarks``; nothing here is imported by the runtime itself (``fastsam-onnx bench``
imports it lazily). One module per concern:

- :mod:`.cases`: the :class:`~.cases.Case` spec, the suite's case table, default prompts, images;
- :mod:`.timing`: timing primitives and our side (stage runs, prompts, the bare session run), run in a child;
- :mod:`.reference`: the ultralytics side in PyTorch (needs the ``[export]`` extra), run in a child;
- :mod:`.children`: child processes, their peak resident memory, cold starts;
- :mod:`.machine`: CPU, cores, memory, load, installed sizes;
- :mod:`.figures`: the numbers both writers read (medians, speed-ups, overheads, the goals);
- :mod:`.report`: the Markdown report and the README section; :mod:`.plots`: the PNG plots (matplotlib);
- :mod:`.report_files`: a new report and ``write_report`` (the one place that calls both writers);
- :mod:`.distributed`: ``segment --engine ray`` against the folder mode (``python -m fastsam_onnx.benchmarks.distributed``).

The suite's runners that need a checkout of the repository (test-made models from ``tests/``, the README) live
in ``tools/``, not installed: ``tools/run_benchmarks.py`` (the full suite), ``tools/update_readme.py`` (the
README section), ``tools/bench_outputs.py`` (output costs), ``tools/bench_server.py`` (the server).

Only :mod:`.reference` imports torch/ultralytics and only :mod:`.plots` imports matplotlib, both inside
functions, so our side runs on the base install.
"""
