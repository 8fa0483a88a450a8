"""What turns decoded bands into a product, one module per job.

``decode`` (coarse first: the survey, every input band read at 60 m, onto the coarse and
survey scene grids), ``scene`` (classification and atmosphere estimate, with the exclusion
policy), ``correct`` (one window of one band, DN or TOA in), ``assemble`` (the one pass: the
rasters' jobs, each band decoded, corrected and drafted strip by strip), ``sharpen`` (the
``--super-resolve`` jobs), ``schedule (threads: how many, and jobs started as they free up). The CLI
pipeline and the Python API call the same kernels here.
"""
