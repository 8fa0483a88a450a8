"""Test support: synthetic L1C products, a loopback STAC API and a loopback S3 endpoint.

These helpers stand in for CDSE with real servers and real file formats so that tests run the
production code paths (pystac-client, GDAL's /vsis3, JPEG2000 decoding) without network access.
"""
