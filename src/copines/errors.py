"""Exception families: each message says what to do next."""


class CopinesError(Exception):
    """Base of every error copines raises on purpose."""


class ConfigError(CopinesError):
    """A setting or a data file is wrong; the message names it and the fix."""


class InputError(CopinesError):
    """The caller gave something we cannot use (empty message, unsupported file...)."""


class NotFoundError(CopinesError):
    """A conversation, document or expert that does not exist (or is not yours)."""


class ProviderError(CopinesError):
    """A model, embedding or rerank service failed.

    Attributes:
        provider: short name of the service ("openrouter", "cohere"...).
        status: the HTTP status when there was one.
    """

    def __init__(self, message: str, *, provider: str = "", status: int | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status


class EmbedderMismatchError(ConfigError):
    """The store's vectors were made by another embedder than the one configured."""


class StoreBusyError(CopinesError):
    """The database stayed locked longer than the configured timeout."""
