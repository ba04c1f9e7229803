"""copines: the chat assistant of L'Agence des Copines."""

__version__ = "0.1.0"
