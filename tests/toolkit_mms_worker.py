"""The Python half of AWS's MMS-based serving container, run on an extracted model.tar.gz.

    python toolkit_mms_worker.py MODEL_DIR REQUESTS_JSON

Loads the model as multi-model-server's worker does (mms.model_loader.MmsModelLoader with
sagemaker-inference's default handler service, which imports the archive's code/inference.py
through sagemaker_inference.transformer.Transformer). Each request of REQUESTS_JSON
({"body_file": path, "headers": {name: value}}) is framed in MMS's worker protocol, read back by
mms.protocol.otf_message_handler.retrieve_msg from a socket pair as the worker reads the frontend,
answered by mms.service.Service.predict, and its binary answer decoded. Prints one JSON line per
request: {"status", "phrase", "content_type", "body"}. Only MMS's Java frontend is left out.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading

os.environ.setdefault("MMS_DECODE_INPUT_REQUEST", "false")  # sagemaker-inference's MMS config

from mms.model_loader import MmsModelLoader  # noqa: E402
from mms.protocol.otf_message_handler import retrieve_msg  # noqa: E402

HANDLER_SERVICE = "sagemaker_inference.default_handler_service"


def _chunk(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data


def frame_predict(request_id: str, headers: dict[str, str], body: bytes) -> bytes:
    """One predict command as MMS's frontend writes it: headers, then the body as parameter `body`."""
    content_type = headers.get("Content-Type", "")
    frame = b"I" + _chunk(request_id.encode())
    for name, value in headers.items():
        frame += _chunk(name.encode()) + _chunk(value.encode())
    frame += struct.pack("!i", -1)
    frame += _chunk(b"body") + _chunk(content_type.encode()) + _chunk(body)
    return frame + struct.pack("!i", -1) + struct.pack("!i", -1)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def int(self) -> int:
        value = struct.unpack_from("!i", self.data, self.offset)[0]
        self.offset += 4
        return value

    def bytes(self) -> bytes:
        length = self.int()
        value = self.data[self.offset:self.offset + length]
        self.offset += length
        return bytes(value)


def decode_predict_response(data: bytes) -> dict:
    """The first (only) prediction of mms.protocol.otf_message_handler.create_predict_response."""
    reader = _Reader(data)
    reader.int(), reader.bytes()  # batch status and message
    reader.bytes()  # request id
    content_type = reader.bytes().decode()
    status, phrase = reader.int(), reader.bytes().decode()
    for _ in range(reader.int()):  # response headers
        reader.bytes(), reader.bytes()
    return {"status": status, "phrase": phrase, "content_type": content_type,
            "body": reader.bytes().decode("utf-8", "replace")}


def serve_one(service, request_id: str, headers: dict[str, str], body: bytes) -> dict:
    frontend, worker = socket.socketpair()
    with frontend, worker:
        writer = threading.Thread(target=frontend.sendall, args=(frame_predict(request_id, headers, body),))
        writer.start()
        _, batch = retrieve_msg(worker)
        writer.join()
    return decode_predict_response(service.predict(batch))


def main(model_dir: str, requests_file: str) -> int:
    service = MmsModelLoader().load("model", model_dir, HANDLER_SERVICE, None, 1)
    with open(requests_file) as handle:
        requests = json.load(handle)
    for number, request in enumerate(requests):
        with open(request["body_file"], "rb") as handle:
            body = handle.read()
        answer = serve_one(service, f"request-{number}", request["headers"], body)
        sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
