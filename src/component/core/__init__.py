"""What every layer shares and nothing else: the Sentinel-2 band table, the raster grid and
file checksums. Imports neither ``io`` nor ``model`` nor ``engine``."""
