"""Scipion viewers of xmipp3-deepcons (found by Scipion through this package)."""
from .viewer_deep_consensus import XmippDeepConsensusViewer

__all__ = ["XmippDeepConsensusViewer"]
