"""Scale-out on Celery and Redis (docs/contract.md section 7): API processes that hold no model,
workers anywhere, results in a shared directory or S3.

- :mod:`.connection`: what both sides share (the broker, the records in Redis, the blob store).
- :mod:`.app`: the Celery app and its two tasks, what ``dualserve worker`` runs.
- :mod:`.runner`: the API process's job runner, which queues a job's id for the workers.
- :mod:`.relay`: a ``/run`` answer made on a worker, sent on by the API process as it comes.

Needs the ``cluster`` extra (``pip install 'dualserve[cluster]'``: Celery, redis-py, boto3).
"""
