"""The one exception type of the SIP layer, in the manner of h11's ProtocolError."""


class SipError(Exception):
    """A message or request that cannot be processed.

    `status` is the response a server should send for it (400 unless a more precise code
    applies, e.g. 505 for an unknown SIP version, 416 for an unsupported URI scheme).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
