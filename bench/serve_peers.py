"""The other servers bench/serve_bench.py measures convlab's against, on the same model and client.

- bare: uvicorn + Starlette (the same HTTP stack as convlab's server) answering every POST with a
  fixed 80-byte JSON after reading the body: the transport ceiling, no model, no decoding.
- naive: Flask calling Keras model.predict per request, the floor.
MLServer, the real peer, is in bench/mlserver_peer.py.
"""
from __future__ import annotations

import sys
from pathlib import Path


FIXED_REPLY = b'{"label":"Ankle boot","class_index":9,"probability":0.98765,"model":"bare-ceiling"}'

BARE_SERVER = '''
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

REPLY = %r


async def ping(request):
    return Response(b"", status_code=200)


async def invocations(request):
    await request.body()
    return Response(REPLY, media_type="application/json")


app = Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, server_header=False)
''' % FIXED_REPLY

# The floor: Flask calling Keras model.predict per request, as many tutorials serve a model.
NAIVE_SERVER = '''
import io, json, sys
import numpy as np, keras
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.serving import make_server

model_dir, port = sys.argv[1], int(sys.argv[2])
model = keras.models.load_model(model_dir + "/model.keras")
classes = json.load(open(model_dir + "/labels.json"))
app = Flask("naive")


@app.get("/ping")
def ping():
    return "", 200


@app.post("/invocations")
def invocations():
    image = Image.open(io.BytesIO(request.get_data())).convert("L").resize((28, 28))
    x = np.asarray(image, np.float32)[None, :, :, None] / 255.0
    p = model.predict(x, verbose=0)[0]
    i = int(p.argmax())
    return jsonify({"label": classes[i], "class_index": i, "probabilities": dict(zip(classes, p.tolist()))})


make_server("127.0.0.1", port, app, threaded=True).serve_forever()
'''

def bare_command(scratch: Path, port: int) -> list[str]:
    script = scratch / "bare_server.py"
    script.write_text(BARE_SERVER)
    return [sys.executable, str(script), str(port)]
