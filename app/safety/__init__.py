"""Safety monitoring: reported AI-associated safety events and the figures of the safety dashboard."""
