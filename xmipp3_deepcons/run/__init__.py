"""The run engine: one run folder, its settings, and the stages that both front ends run.

No Scipion here. ``folder`` is the layout and its readers, ``settings`` what a run is asked to
do, ``schedule`` the training-pass rule, ``keep`` the output rule, ``stages`` the work, and
``outputs`` the command line's output files.
"""
