import io

from PIL import ImageFilter

from bench import workload
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    """CPU-bound, about 70 ms of one core: the 512x512 drawing, two blur-and-sharpen passes, PNG.

    Pillow's filters and zlib run on one thread, so one worker process uses one core (bench.cluster).
    """

    def run_api(self) -> bytes:
        image = workload.render()
        for _ in range(2):
            image = image.filter(ImageFilter.GaussianBlur(3)).filter(ImageFilter.DETAIL)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
