"""Scipion protocols of xmipp3-deepcons (found by Scipion through this package)."""
from .protocol_screen_deepconsensus import XmippProtScreenDeepConsensus
from .protocol_deepcons_subset import XmippProtDeepConsSubSet

__all__ = ["XmippProtScreenDeepConsensus", "XmippProtDeepConsSubSet"]
from .protocol_deepcons_score_subset import XmippProtDeepConsScoreSubset

__all__ += ["XmippProtDeepConsScoreSubset"]
