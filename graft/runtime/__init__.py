"""The serving runtime: worker processes that execute a plan's stages on real models, and
the Open Inference Protocol frontends (HTTP, gRPC) that clients such as ``tritonclient``
talk to. Imports torch (in the workers)."""
