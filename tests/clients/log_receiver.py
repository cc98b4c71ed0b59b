"""A decision-log service for the e2e tests: OPA's upload protocol as a
receiver sees it (POST <resource>, Content-Encoding: gzip, a JSON array of
events). Every event it accepts is appended, one JSON line each, to
DIR/events.jsonl; every request is noted in DIR/requests.jsonl (path,
encoding, status). While DIR/fail exists it answers 503 and keeps nothing:
the test's switch for an outage. It writes its port to DIR/port once
listening (port 0: the kernel's choice).

usage: log_receiver.py DIR [--resource /logs]
"""

import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
RESOURCE = sys.argv[sys.argv.index("--resource") + 1] if "--resource" in sys.argv else "/logs"
LOCK = threading.Lock()


def note(path, encoding, status, events=0):
    with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
        f.write(json.dumps({"path": path, "encoding": encoding, "status": status, "events": events}) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        with LOCK:
            if os.path.exists(os.path.join(DIR, "fail")):
                note(self.path, encoding, 503)
                return self.answer(503)
            if self.path != RESOURCE or encoding != "gzip":
                note(self.path, encoding, 400)
                return self.answer(400)
            try:
                events = json.loads(gzip.decompress(body))
                assert isinstance(events, list)
            except Exception:
                note(self.path, encoding, 400)
                return self.answer(400)
            with open(os.path.join(DIR, "events.jsonl"), "a") as f:
                for e in events:
                    f.write(json.dumps(e) + "\n")
            note(self.path, encoding, 200, len(events))
        self.answer(200)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
tmp = os.path.join(DIR, "port.tmp")
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, os.path.join(DIR, "port"))
server.serve_forever()
