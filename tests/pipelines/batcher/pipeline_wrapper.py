"""A worker task started in async setup() serves every call: all must run on that one loop."""

import asyncio

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def setup(self) -> None:
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[str]]] = asyncio.Queue()
        self.worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while True:
            text, future = await self.queue.get()
            future.set_result(text.upper())

    async def run_api(self, text: str = "hi") -> dict[str, str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self.queue.put((text, future))
        return {"result": await asyncio.wait_for(future, 5)}
