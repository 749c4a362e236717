"""Moved to lakerec.schema.fields (the field registry, with tags); this name stays until its last importers switch.

Kept only so that lakerec/aliccp/generator.py, which is being split on another branch,
still imports; delete this file once it imports lakerec.schema.fields.
"""

from lakerec.schema.fields import *  # noqa: F401,F403
from lakerec.schema.fields import BY_CODE, BY_NAME, FIELDS, Field, fields_of  # noqa: F401 (explicit for readers)
