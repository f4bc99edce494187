"""Speech-biomarker jobs: acoustic features, segment classifiers, spiking layers."""
