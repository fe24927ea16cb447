"""Serving cells: how many requests per second a variant answers within a latency bound, measured by
MLPerf's LoadGen (`mlcommons-loadgen`) driving the variant through a runner that keeps several requests
in flight (README "Serving"; DESIGN.md "Serving").

  batching.py    the queue LoadGen's samples wait in, and how a free request takes a batch from it
  runners.py     the runner of every backend (its own instances on threads, one CUDA stream each on a GPU);
                 a runtime with an async API of its own overrides `Backend.serving_runner` in its module
                 (OpenVINO's AsyncInferQueue: backends/openvino.py)
  loadgen.py     one LoadGen test (a scenario at its settings) and what its detail log says
  repetition.py  one repetition in a fresh process: load, warm up, run the scenario (Server: the search)
  command.py     `infbench serve`: the repetitions, combined into figures with intervals
"""
