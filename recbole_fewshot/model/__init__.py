"""Plugin models, one per file (``<lowercase name>.py`` defines class ``<Name>``); see ``registry``."""
