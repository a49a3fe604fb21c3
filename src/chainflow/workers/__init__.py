"""Queue edge: the engine loops that drain lanes and track chains."""
