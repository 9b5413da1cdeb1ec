"""The default label of a new run of this plugin's protocols.

pyworkflow names a new run "<plugin name> - <protocol label>" and writes it in the Methods tab
as ``_<run name>_`` (italics). The plugin's name, xmipp3_deepcons, holds an underscore, which
ends the italics early ("xmipp3" in italics, the rest with stray underscores), so the runs
are named with the distribution's spelling, xmipp3-deepcons, instead."""

PACKAGE_LABEL = "xmipp3-deepcons"


class DeepConsLabel:
    """Mixed into this plugin's protocols (first base): their default run label."""

    @classmethod
    def getClassLabel(cls, prependPackageName=True):
        label = cls.__dict__.get('_label', cls.__name__)
        return "%s - %s" % (PACKAGE_LABEL, label) if prependPackageName else label
