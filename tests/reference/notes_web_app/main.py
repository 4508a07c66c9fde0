"""Reference solution of the notes_web_app task (never shown to a model): validates its acceptance checks."""

import html
import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

NOTES = []


def page(notes):
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    form = '<form method="post" action="/add"><input name="note"><button>add</button></form>'
    return f"<html><body><ul>{items}</ul>{form}</body></html>"


def add(notes, body):
    note = urllib.parse.parse_qs(body).get("note", [""])[0].strip()
    if note:
        notes.append(note)
    return notes


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = page(NOTES).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        add(NOTES, self.rfile.read(length).decode())
        self.send_response(303)
        self.send_header("Location", "/")
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ.get("PORT", 8000))), Handler).serve_forever()
