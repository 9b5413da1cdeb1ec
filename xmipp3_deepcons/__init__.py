"""Deep Consensus particle screening for cryo-EM: a Scipion plugin and a command line.

The engine (``core``, ``io``) needs only numpy, scipy and Keras. Scipion is imported only when
Scipion asks for the ``Plugin`` class, so the command line works without it.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Scipion's plugin discovery reads ``xmipp3_deepcons.Plugin``; load pwem only then.
    if name == "Plugin":
        from .scipion_plugin import Plugin
        return Plugin
    raise AttributeError(name)
