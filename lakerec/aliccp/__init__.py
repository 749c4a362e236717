"""Ali-CCP raw format knowledge: fields, generator, parser."""
