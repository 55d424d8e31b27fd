"""The simulated bench the agent starts when no --bench is given."""
