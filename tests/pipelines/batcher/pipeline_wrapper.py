"""A worker task started in async setup() serves every call: all must run on that one loop.

It answers with the threads its setup and its call ran in: the server's main thread under
uvicorn (the server's own loop), the portal's thread where there is no server loop."""

import asyncio
import threading

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def setup(self) -> None:
        self.setup_thread = threading.current_thread().name
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[str]]] = asyncio.Queue()
        self.worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while True:
            text, future = await self.queue.get()
            future.set_result(text.upper())

    async def run_api(self, text: str = "hi") -> dict[str, str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self.queue.put((text, future))
        result = await asyncio.wait_for(future, 5)
        return {"result": result, "setup_thread": self.setup_thread, "thread": threading.current_thread().name}
