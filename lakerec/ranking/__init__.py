"""The ranking stage: a multi-task click and conversion model over every impression (issue 11)."""
