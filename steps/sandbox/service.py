"""What every loopback stand-in shares: start, stop, and ``with`` in between."""

from __future__ import annotations

from typing import Self


class Service:
    """A stand-in service; ``with Service(...) as running:`` starts and stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
