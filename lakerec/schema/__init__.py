"""One schema for the lake: the Ali-CCP field registry (lakerec.schema.fields)."""
