"""The ranking stage: a click/conversion model over every impression, its evaluation and the two-stage run."""
