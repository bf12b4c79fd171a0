"""Tools over a whole bundle folder: the bundle contract every bundle meets (:mod:`.contract`, with the metadata
schema in ``schemas/``), ONNX export (:mod:`.export`) and a self-contained archive (:mod:`.archive`)."""
