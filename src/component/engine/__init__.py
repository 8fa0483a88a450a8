"""What turns decoded bands into a product, one module per job.

``decode`` (pass 1: every band decoded once, onto the coarse and scene grids, DN spilled),
``scene`` (classification and atmosphere estimate, with the exclusion policy), ``correct``
(one window of one band, DN or TOA in), ``assemble`` (pass 2: the rasters' jobs and what
each drafts), ``schedule`` (threads: how many, and jobs started as they free up). The CLI
pipeline and the Python API call the same kernels here.
"""
