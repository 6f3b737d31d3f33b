"""``sdn bench``: how fast sdn loads clips and trains, measured side by side in one run.

* :mod:`sdn.bench.loader` — clip loading per core: sdn's loader path against a faithful
  re-creation of the original per-frame PIL pipeline, and the decode-only ceiling.
* :mod:`sdn.bench.train` — training-step throughput and achieved GFLOP/s of each speed option
  (fp32 eager, channels-last, bf16/fp16 autocast, cudnn benchmark, torch.compile) against the
  machine's measured matmul peak; and the cost of one full-SDN iteration (two optimizer steps)
  against a baseline iteration.
* :mod:`sdn.bench.common` — interleaved timing, the machine description, tables, JSON and chart.

Every comparison runs its variants interleaved in rounds (each round runs every variant once, in
a rotating order), so that background load hits all of them alike; the tables say which
statistic of the rounds they show (best or median). Nothing here is a stored number.
"""
