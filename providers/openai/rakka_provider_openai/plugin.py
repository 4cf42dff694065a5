"""Entry point of the provider plugin (group ``rakka``)."""
