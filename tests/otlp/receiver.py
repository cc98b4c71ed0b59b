"""A minimal OTLP/HTTP traces receiver for gavel's end-to-end tests.

Stores every JSON body POSTed to /v1/traces as one line of OUT (with the
request's content type and the headers the test asks about), and answers
200 with an empty ExportTraceServiceResponse. Writes the port it listens on
to PORT_FILE once it is ready. `--hang` accepts connections and never
answers (the worst outage for an exporter: it must not slow decisions).

usage: receiver.py OUT PORT_FILE [--hang]
"""

import http.server
import json
import sys
import os
import threading
import time

OUT, PORT_FILE = sys.argv[1], sys.argv[2]
HANG = "--hang" in sys.argv[3:]
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if HANG:
            time.sleep(3600)
            return
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        line = json.dumps({
            "path": self.path,
            "content_type": self.headers.get("content-type"),
            "x_api_key": self.headers.get("x-api-key"),
            "body": json.loads(body),
        })
        with LOCK, open(OUT, "a") as f:
            f.write(line + "\n")
        reply = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))

os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
