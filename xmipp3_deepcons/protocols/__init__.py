"""Scipion protocols of xmipp3-deepcons (found by Scipion through this package)."""
from .. import scipion_plugin  # noqa: F401  (its fixes of the Scipion set-up, see there)
from .protocol_screen_deepconsensus import XmippProtScreenDeepConsensus
from .protocol_deepcons_subset import XmippProtDeepConsSubSet

__all__ = ["XmippProtScreenDeepConsensus", "XmippProtDeepConsSubSet"]
from .protocol_deepcons_score_subset import XmippProtDeepConsScoreSubset

__all__ += ["XmippProtDeepConsScoreSubset"]
