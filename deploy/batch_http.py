"""Batch transform requests sent to a running model server over HTTP, as SageMaker sends them:
at most MaxConcurrentTransforms requests at once, each at most MaxPayloadInMB, with the job's
Content-Type and Accept; any answer other than 200 fails the object it belongs to.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from deploy.invokers import Endpoint
from deploy.records import TransformOptions
from deploy.stores import Item
from deploy.answers import Answer, Failure, assembled, failure_of, in_order, read_requests


def answers_over_http(endpoint: Endpoint, source, items: list[Item], options: TransformOptions,
                      workers: int) -> Iterator[Answer]:
    concurrent = options.max_concurrent_transforms or 1
    with ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="transform-invoke") as senders, \
            ThreadPoolExecutor(max_workers=max(workers, concurrent), thread_name_prefix="transform-get") as readers:

        def transform(item: Item) -> Answer:
            found = read_requests(source, item, options)
            if isinstance(found, Failure):
                return Answer(item, failure=found)
            bodies, content_type = found
            sent = [senders.submit(endpoint.invoke, body, content_type, options.accept) for body in bodies]
            responses = []
            for future in sent:
                try:
                    responses.append(future.result())
                except Exception as exc:  # noqa: BLE001 - the object fails, the others go on
                    for other in sent:
                        other.cancel()
                    return Answer(item, failure=failure_of(item, "invoke", exc), requests=len(bodies))
            return assembled(item, responses, options)

        yield from in_order(readers, items, transform, max(workers, concurrent) * 2)
