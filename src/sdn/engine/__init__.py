"""Training, validation and test: one trainer, three objectives."""
