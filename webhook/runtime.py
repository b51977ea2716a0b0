"""The live engine, and its hot reload from the configuration file.

`load()` builds the first engine (an invalid file is an error: there is nothing to fall
back to); until then the runtime is not ready and `/readyz` says so. The server asks
`runtime.engine` for every request. When the file changes, a new engine is built beside
the old one and swapped in only if it builds: an invalid file is logged and the last good
configuration keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from webhook import config, dra, engine, errors

log = logging.getLogger("mlgate.runtime")

ReloadListener = Callable[[bool, str], None]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


class Runtime:
    """Holds the current `Engine`; `reload()` swaps in a new one if the config is valid."""

    def __init__(self, config_path: str | Path | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config_path = Path(config_path) if config_path else None
        self.environ = environ
        self.listeners: list[ReloadListener] = []
        self._stamp: tuple[int, int, int] | None = None
        self._engine: engine.Engine | None = None
        self.last_error = ""
        self.claims: dra.Source | None = None  # where engines look pod claims up
        # where engines run blocking policies (the server's `invocation.PolicyThreads`)
        self.executor: concurrent.futures.Executor | None = None

    def use_claims(self, source: dra.Source) -> None:
        """Look pod claims up in `source` (the server's claim cache) from now on."""
        self.claims = source
        if self._engine is not None:
            self._engine.claims = source

    def use_executor(self, executor: concurrent.futures.Executor) -> None:
        """Run the blocking policies of this and every later engine in `executor`."""
        self.executor = executor
        if self._engine is not None:
            self._engine.executor = executor

    def load(self) -> engine.Engine:
        """Build the first engine from the file. Raises ConfigError when it is invalid."""
        self._stamp = _stamp(self.config_path) if self.config_path else None
        self._engine = engine.Engine.build(config.load(self.config_path, self.environ),
                                           claims=self.claims, executor=self.executor)
        return self._engine

    @property
    def ready(self) -> bool:
        """The configuration and every policy it enables are loaded."""
        return self._engine is not None

    @property
    def engine(self) -> engine.Engine:
        if self._engine is None:
            raise RuntimeError("Runtime.load() has not run: the configuration is not loaded")
        return self._engine

    async def reload(self) -> bool:
        """Build an engine from the file as it is now. False (and logged) when invalid."""
        try:
            new = engine.Engine.build(config.load(self.config_path, self.environ),
                                      claims=self.claims, executor=self.executor)
        except errors.ConfigError as exc:
            self.last_error = str(exc)
            log.error("configuration rejected, keeping the last good one: %s", exc)
            self._notify(False, str(exc))
            return False
        old, self._engine = self._engine, new
        if old is not None:
            await old.aclose()
        self.last_error = ""
        log.info("configuration reloaded from %s", self.config_path)
        self._notify(True, "")
        return True

    def _notify(self, ok: bool, error: str) -> None:
        for listener in self.listeners:
            listener(ok, error)

    async def reload_if_changed(self) -> bool | None:
        if self.config_path is None:
            return None
        stamp = _stamp(self.config_path)
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        return await self.reload()

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the file (ConfigMap volumes swap symlinks, so inotify is unreliable there)."""
        while True:
            await asyncio.sleep(interval)
            await self.reload_if_changed()
