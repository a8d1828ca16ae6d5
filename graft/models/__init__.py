"""Models as chains of blocks (partition units).

* :mod:`graft.models.spec` -- ``BlockSpec`` / ``ModelSpec``: shapes, bytes, FLOPs, kernels and
  activation traffic per block (no torch).
* :mod:`graft.models.catalog` -- the committed table ``data/blocks.json`` (no torch).
* :mod:`graft.models.chains` -- the real torchvision models cut into ``BlockChain`` s (torch).
* :mod:`graft.models.measure` -- measures the chains and (re)writes or checks the table (torch).
"""
