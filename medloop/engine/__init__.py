"""Running a trial end to end on the host: spec -> staging -> executor -> safe read of the
job's outputs -> metrics recomputed against held-out labels -> a record in the store.

Also the replay backend (recorded outcomes instead of jobs) and the arm comparisons that
turn trials into verdicts. Below agents and tools, above sandbox/evaluation/experiments.dataset.
"""
