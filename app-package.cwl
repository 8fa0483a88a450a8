cwlVersion: v1.2
# OGC EO Application Package (OGC 20-089r1): Sentinel-2 L1C -> L2A.
# The platform stages a STAC catalog of L1C items in (a Directory holding catalog.json) and
# stages the L2A catalog out (a Directory holding catalog.json, one Item per product).
$namespaces:
  s: https://schema.org/
s:softwareVersion: 0.1.0
s:license: https://www.apache.org/licenses/LICENSE-2.0
$graph:
  - class: Workflow
    id: s2-l1c2l2a
    label: Sentinel-2 L1C to L2A (physics-informed network)
    doc: >-
      Corrects every Sentinel-2 L1C input the input STAC catalog links (items of SAFE JPEG
      2000 bands or EOPF Zarr products, SAFE folders or zips, Zarr products) into an L2A
      product: the twelve L2A bands on their native grids,
      AOT, WVP, TCI, SCL and CLD as Cloud-Optimized GeoTIFFs, described by STAC 1.1 Items in
      the output catalog.
    requirements: []
    inputs:
      l1c:
        type: Directory
        label: L1C items
        doc: A folder holding a STAC catalog.json that links the L1C items.
      resolution:
        type: string?
        label: finest output grid (m)
        doc: 10, 20 or 60; each band is written at max(this, its native resolution).
        default: "60"
      bbox:
        type: string?
        label: output window
        doc: W,S,E,N in degrees; only the window is read and written.
      dem:
        type: string?
        label: elevation raster
        doc: >-
          A DEM (GeoTIFF, VRT, COG; path or URL) for the terrain's air; empty: the Copernicus
          DEM of the CDSE STAC (with S3 keys), else the component's offline 5 arc-minute map.
      elevation:
        type:
          - "null"
          - type: enum
            name: elevation_source
            symbols: [auto, copernicus-90, copernicus-30, offline, sea-level]
        label: elevation source
        doc: >-
          Where the elevation comes from when no dem is given: auto (the Copernicus DEM of the
          CDSE STAC with S3 keys, else the offline map), copernicus-90 or copernicus-30 (that
          collection; the run stops if it cannot be read), offline (the component's 5
          arc-minute map, no network) or sea-level.
        default: auto
      cirrus_correction:
        type: boolean?
        label: cirrus correction
        doc: >-
          Take thin cirrus (B10) out of every band. Off by default, as in Sen2Cor's
          configuration: cirrus is flagged in SCL (class 10) and kept out of the aerosol
          estimate only.
        default: false
      super_resolve:
        type: boolean?
        label: every band at 10 m
        doc: >-
          Also write B01, B05, B06, B07, B8A, B09, B11 and B12 sharpened onto the 10 m grid
          (B01_10m ... B12_10m), each 10 m block averaging back to the native pixel. Needs
          resolution 10. Off by default.
        default: false
    outputs:
      l2a:
        type: Directory
        label: L2A products
        doc: A folder holding the output STAC catalog.json, its Items and their COGs.
        outputSource: correct/l2a
    steps:
      correct:
        run: "#correct"
        in:
          l1c: l1c
          resolution: resolution
          bbox: bbox
          dem: dem
          elevation: elevation
          cirrus_correction: cirrus_correction
          super_resolve: super_resolve
        out:
          - l2a

  - class: CommandLineTool
    id: correct
    label: python -m component run --catalog
    hints:
      # A hint, as OGC 20-089 allows and EOEPCA's packages do: platforms run the image, and
      # `cwltool --no-container` can still run the tool where the component is installed.
      DockerRequirement:
        dockerPull: s2-l1c2l2a:0.1.0
    requirements:
      NetworkAccess:
        networkAccess: true
      ResourceRequirement:
        coresMin: 2
        ramMin: 8192
    baseCommand: [python, -m, component, run]
    arguments:
      - --output
      - l2a
    inputs:
      l1c:
        type: Directory
        inputBinding:
          prefix: --catalog
      resolution:
        type: string?
        inputBinding:
          prefix: --resolution
      bbox:
        type: string?
        inputBinding:
          prefix: --bbox=
          separate: false
      dem:
        type: string?
        inputBinding:
          prefix: --dem
      elevation:
        type:
          - "null"
          - type: enum
            name: elevation_source
            symbols: [auto, copernicus-90, copernicus-30, offline, sea-level]
        inputBinding:
          prefix: --elevation
      cirrus_correction:
        type: boolean?
        inputBinding:
          prefix: --cirrus-correction
      super_resolve:
        type: boolean?
        inputBinding:
          prefix: --super-resolve
    outputs:
      l2a:
        type: Directory
        outputBinding:
          glob: l2a
