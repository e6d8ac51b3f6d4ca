"""The bundled toy domains: street scenes rendered in five appearances, generated on first use.

``scenes`` lays out a scene (faces in 3D with their classes and materials); ``domains`` renders it in
each domain's appearance and caches the splits on disk (``ensure_toy_domain``). Research data for the
bundled benchmarks and the tests, not the product's dataset readers (``duda_engine.data``).
"""
