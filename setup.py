from setuptools import find_packages, setup

setup(
    name="scipion-em-xmipp3-deepcons",
    version="0.1.0",
    description="Deep Consensus particle screening for cryo-EM (Scipion plugin and command line)",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    packages=find_packages(include=["xmipp3_deepcons", "xmipp3_deepcons.*"]),
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[
        "numpy", "scipy", "mrcfile", "emtable", "matplotlib", "scikit-learn",
        "keras>=3", "tensorflow-cpu>=2.16",
    ],
    extras_require={
        "scipion": ["scipion-pyworkflow", "scipion-em", "scipion-app", "scipion-em-xmipp"],
        "test": ["pytest"],
        # cryoSPARC .cs picks in and out (screen --coordinates FILE.cs, particles.cs)
        "cryosparc": ["cryosparc-tools"],
        # only to regenerate the shipped models: scripts/train_shipped_models.py
        "sim": ["aspire>=0.14.3"],
    },
    entry_points={
        "pyworkflow.plugin": ["xmipp3_deepcons = xmipp3_deepcons"],
        "console_scripts": ["xmipp_deep_consensus = xmipp3_deepcons.cli:main"],
    },
    classifiers=["License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)"],
)
