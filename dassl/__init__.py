"""Our own Dassl-compatible engine (the public API of Dassl.pytorch that the
CoOp family of prompt-learning code imports), written for this framework."""
__version__ = "0.1.0"
